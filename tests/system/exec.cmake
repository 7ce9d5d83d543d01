# tests/system/exec.cmake (exec runtime plugin, plugins/exec.c)
#  system_exec_survives  agentd as a systemd unit in the sandbox (sbx.sh) runs an exec service
#                        (busybox httpd); restart, stop+start and kill -9 of agentd leave its
#                        PID unchanged while a client loop sees no failed request; a deploy and
#                        a rollback still replace the process (issue 13)
# Prints "SKIP: <reason>" and exits 77 without root, systemd, unshare, curl or busybox.
shoal_sh_test(system_exec_survives ${CMAKE_CURRENT_LIST_DIR}/test_exec_survives.sh
              TIMEOUT 300 LABELS system)
# system_disk_full: the state directory's filesystem fills during an import: the reason in
# words (no_space), the agent keeps serving, the store reads back after a restart (issue 13).
shoal_sh_test(system_disk_full ${CMAKE_CURRENT_LIST_DIR}/test_disk_full.sh
              TIMEOUT 120 LABELS system)
