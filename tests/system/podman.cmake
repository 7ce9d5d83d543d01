# tests/system/podman.cmake (container plugin): a real Podman serving the Docker Engine API.
#  system_plugins_container  plugins/container.c driven on a real uv loop against
#                            `podman system service` on a private socket and storage; every
#                            step checked again with the podman CLI and over TCP
#                            (test_container_plugin.sh builds the images and artifacts and
#                            runs the C program test_container_plugin).
# Prints "SKIP: <reason>" and exits 77 without root, podman, runc or a static busybox.
add_executable(test_container_plugin ${CMAKE_CURRENT_LIST_DIR}/test_container_plugin.c)
target_link_libraries(test_container_plugin PRIVATE shoal_plugins)
shoal_sh_test(system_plugins_container ${CMAKE_CURRENT_LIST_DIR}/test_container_plugin.sh
              TIMEOUT 360 LABELS system)
