-- Undo 0002. Rolling back an added column necessarily drops what it holds.
DROP INDEX "BuilderProfile_validationTier_idx";
DROP INDEX "BuilderProfile_availability_idx";
DROP INDEX "BuilderProfile_searchable_idx";
DROP INDEX "BuilderProfile_featured_idx";
DROP INDEX "BuilderProfile_slug_key";

ALTER TABLE "BuilderProfile"
    DROP COLUMN "topSkills",
    DROP COLUMN "availableForHire",
    DROP COLUMN "availability",
    DROP COLUMN "searchable",
    DROP COLUMN "featuredBuilder",
    DROP COLUMN "featured",
    DROP COLUMN "slug",
    DROP COLUMN "displayName";

ALTER TABLE "User" DROP COLUMN "isDemo";
