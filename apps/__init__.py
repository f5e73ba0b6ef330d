"""Applications that compose training (`model`) and serving (`service`); neither of those imports this package."""
