import FSS
