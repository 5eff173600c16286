"""Array operations shared by models and objectives, with no knowledge of either."""
