-- The marketplace: which builders are listed (searchable), how they are ordered (featured,
-- validationTier), how they are shown (displayName, slug, topSkills, availability) and which
-- accounts are demo accounts ("User"."isDemo").
-- depends: 0001_initial

ALTER TABLE "User" ADD COLUMN "isDemo" BOOLEAN NOT NULL DEFAULT false;

ALTER TABLE "BuilderProfile"
    ADD COLUMN "displayName" TEXT,
    ADD COLUMN "slug" TEXT,
    ADD COLUMN "featured" BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN "featuredBuilder" BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN "searchable" BOOLEAN NOT NULL DEFAULT true,
    ADD COLUMN "availability" TEXT NOT NULL DEFAULT 'available',
    ADD COLUMN "availableForHire" BOOLEAN NOT NULL DEFAULT true,
    ADD COLUMN "topSkills" TEXT[] DEFAULT ARRAY[]::TEXT[];

CREATE UNIQUE INDEX "BuilderProfile_slug_key" ON "BuilderProfile"("slug");
CREATE INDEX "BuilderProfile_featured_idx" ON "BuilderProfile"("featured");
CREATE INDEX "BuilderProfile_searchable_idx" ON "BuilderProfile"("searchable");
CREATE INDEX "BuilderProfile_availability_idx" ON "BuilderProfile"("availability");
CREATE INDEX "BuilderProfile_validationTier_idx" ON "BuilderProfile"("validationTier");
