# tests/system/deb.cmake (packaging, issue 13)
#  system_deb  the .deb (built here twice, V and a later V+systest1, as `make deb` builds it,
#              and linted) installed with dpkg -i into a systemd sandbox whose /usr, /etc and
#              /var are overlays (the host's stay untouched): start, agentctl status, a
#              systemd-runtime deploy under the unit's sandboxing, reload (with --check-config),
#              no restart loop on a config error, upgrade, purge.
# Prints "SKIP: <reason>" and exits 77 without root, systemd, overlayfs, cpack, lintian, ...
shoal_sh_test(system_deb ${CMAKE_CURRENT_LIST_DIR}/test_deb.sh TIMEOUT 600 LABELS system)
