print("layermount: not built yet")
