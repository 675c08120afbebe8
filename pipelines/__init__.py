"""The jobs analysts run: city, federate, predict, demo; the kizashi command line."""
