-- "User"."imageUrl" becomes "image". A rename, never DROP + ADD: the app once did the
-- latter and every user's picture was lost.
-- depends: 0002_marketplace_fields

ALTER TABLE "User" RENAME COLUMN "imageUrl" TO "image";
