"""SQL store: typed SQLAlchemy models, engine set-up, repository functions, group-commit writer."""
