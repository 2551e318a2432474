-- Undo 0003, keeping every value.
ALTER TABLE "User" RENAME COLUMN "image" TO "imageUrl";
