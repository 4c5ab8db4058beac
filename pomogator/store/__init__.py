"""Persistence: Piccolo tables, engine selection and migrations."""

import os

# Piccolo finds its configuration through this variable; point it at our own module so nothing depends on the
# working directory.
os.environ["PICCOLO_CONF"] = "pomogator.store.piccolo_conf"
