"""The learning core: RiskNet, training on site data, and federation on Flower."""
