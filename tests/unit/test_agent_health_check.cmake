# The checker on a real loop: real sockets and processes; the slowest test waits ~2 s.
target_compile_definitions(unit_agent_health_check PRIVATE
  SHOAL_SOURCE_DIR_FALLBACK="${CMAKE_SOURCE_DIR}")
set_tests_properties(unit_agent_health_check PROPERTIES TIMEOUT 120)
