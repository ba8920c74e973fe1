"""Registry entries, one module per family; :mod:`museumtok.registry` imports them all."""
