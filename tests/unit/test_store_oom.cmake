# The allocation-failure loops reopen the store after every injected failure: give them room
# on a loaded 2-core machine.
set_tests_properties(unit_store_oom PROPERTIES TIMEOUT 300)
