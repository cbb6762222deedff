-- meshgate governance store, version 3: which gateway replica answered each query (NULL for
-- records written before, or by a gateway that does not name itself).
ALTER TABLE audit ADD COLUMN replica TEXT;
