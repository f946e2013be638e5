"""Schema as code: the indexes (and validators) declared with the models, planned, applied, drift-checked."""
