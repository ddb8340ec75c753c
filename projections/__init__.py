"""Read side: projectors that turn the event log into tables, and the queries over them."""
