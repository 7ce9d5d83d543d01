# The agreement core is pure (agent/agree.c, agent/hlc.c): its test links only that and the
# store's codec, so it builds and runs while the rest of agent/ is being adapted to it.
if(NOT TARGET shoal_agree_core)
  add_library(shoal_agree_core STATIC ${CMAKE_SOURCE_DIR}/agent/agree.c
              ${CMAKE_SOURCE_DIR}/agent/hlc.c)
  target_link_libraries(shoal_agree_core PUBLIC shoal_store)
endif()
set_target_properties(unit_agent_agree PROPERTIES LINK_LIBRARIES
                      "shoal_agree_core;PkgConfig::CMOCKA")
