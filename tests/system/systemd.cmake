# tests/system/systemd.cmake (runtime plugins): a real systemd in a sandbox (sbx.sh).
#  system_systemd_sbx     the sandbox harness: two at once, isolation, clean stop, host canaries
#  system_systemd_plugin  plugins/systemd.c against the sandbox's systemd (the C program
#                         test_systemd_plugin runs inside the sandbox)
# Both print "SKIP: <reason>" and exit 77 without root, systemd or unshare.
add_executable(test_systemd_plugin ${CMAKE_CURRENT_LIST_DIR}/test_systemd_plugin.c)
target_link_libraries(test_systemd_plugin PRIVATE shoal_plugins)
shoal_sh_test(system_systemd_sbx ${CMAKE_CURRENT_LIST_DIR}/test_systemd_sbx.sh
              TIMEOUT 240 LABELS system)
shoal_sh_test(system_systemd_plugin ${CMAKE_CURRENT_LIST_DIR}/test_systemd_plugin.sh
              TIMEOUT 400 LABELS system)
