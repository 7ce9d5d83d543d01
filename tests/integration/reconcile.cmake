# Reconciler integration tests (owned by agent/node/reconcile.c).
# reconcile_crasher runs a reconciler over a real store and the exec plugin, changing the
# desired revision at random moments; integration_agent_reconcile_crash kill -9s it 20 times
# and checks each "resume only" run ends with exactly the desired revision running.
add_executable(reconcile_crasher ${CMAKE_CURRENT_SOURCE_DIR}/reconcile_crasher.c)
target_link_libraries(reconcile_crasher PRIVATE shoal_agent)
shoal_c_test(integration_agent_reconcile_crash
             SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/reconcile_crash_test.c
             LIB shoal_agent TIMEOUT 120 LABELS integration)
target_compile_definitions(integration_agent_reconcile_crash PRIVATE
                           RECONCILE_CRASHER="$<TARGET_FILE:reconcile_crasher>")
add_dependencies(integration_agent_reconcile_crash reconcile_crasher)
