"""Pure render functions for the app's pages: frames and charts in, no ``st`` calls."""
