"""An example xadbench plugin."""
