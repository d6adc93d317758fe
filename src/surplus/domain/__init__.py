"""Domain types shared by every layer: readings, tariffs and the error tree."""
