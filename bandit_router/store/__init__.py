"""SQL store: typed SQLAlchemy models, engine set-up, repository functions and the group-commit writer."""
