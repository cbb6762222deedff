-- meshgate governance store, version 4: the workers a distributed query's stages ran on (a
-- JSON array of their addresses; NULL for a query that ran in the gateway alone).
ALTER TABLE audit ADD COLUMN workers TEXT;
