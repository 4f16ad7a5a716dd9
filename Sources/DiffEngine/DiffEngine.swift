/// Placeholder until the module lands.
enum DiffEngineModule {}
