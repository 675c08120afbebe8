"""Federation on Flower: site plan, client and server apps, strategies, simulation."""
