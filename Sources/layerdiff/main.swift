print("layerdiff: not built yet")
