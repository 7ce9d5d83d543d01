# packaging/dbgsym.cmake: run by CPack (CPACK_PRE_BUILD_SCRIPTS) after the package's files are
# installed into its staging directory and before the .deb is made. Does what Debian's dh_strip
# does: for every ELF file, the debug info goes to /usr/lib/debug/.build-id/xx/yyyy.debug of a
# package shoal-dbgsym (written here with dpkg-deb, next to the .deb), and the file itself is
# stripped and given a .gnu_debuglink. (CPack's own CPACK_DEBIAN_DEBUGINFO_PACKAGE in CMake
# 3.25 writes md5sums with absolute paths and no doc directory: lintian errors.)
cmake_minimum_required(VERSION 3.19)
set(root "${CPACK_TEMPORARY_DIRECTORY}")
set(dbg "${CPACK_TOPLEVEL_DIRECTORY}/shoal-dbgsym-root")
file(REMOVE_RECURSE "${dbg}")
find_program(OBJCOPY objcopy REQUIRED)
find_program(READELF readelf REQUIRED)
find_program(DPKG_DEB dpkg-deb REQUIRED)
find_program(DPKG dpkg REQUIRED)

file(GLOB_RECURSE files LIST_DIRECTORIES false "${root}/*")
set(ids)
foreach(f IN LISTS files)
  if(IS_SYMLINK "${f}")
    continue()
  endif()
  file(READ "${f}" magic LIMIT 4 HEX)
  if(NOT magic STREQUAL "7f454c46")
    continue()
  endif()
  execute_process(COMMAND ${READELF} -n "${f}" OUTPUT_VARIABLE notes COMMAND_ERROR_IS_FATAL ANY)
  if(NOT notes MATCHES "Build ID: ([0-9a-f][0-9a-f])([0-9a-f]+)")
    message(FATAL_ERROR "dbgsym: ${f} has no build id (link with --build-id)")
  endif()
  set(id "${CMAKE_MATCH_1}${CMAKE_MATCH_2}")
  set(out "${dbg}/usr/lib/debug/.build-id/${CMAKE_MATCH_1}/${CMAKE_MATCH_2}.debug")
  get_filename_component(outdir "${out}" DIRECTORY)
  file(MAKE_DIRECTORY "${outdir}")
  execute_process(COMMAND ${OBJCOPY} --only-keep-debug --compress-debug-sections "${f}" "${out}"
                  COMMAND_ERROR_IS_FATAL ANY)
  file(CHMOD "${out}" PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
  # as dh_strip does for executables: all symbols and the .comment/.note sections go
  execute_process(COMMAND ${OBJCOPY} --strip-all --remove-section=.comment --remove-section=.note
                          "--add-gnu-debuglink=${out}" "${f}"
                  COMMAND_ERROR_IS_FATAL ANY)
  list(APPEND ids "${id}")
endforeach()
if(NOT ids)
  message(FATAL_ERROR "dbgsym: no ELF file in ${root}")
endif()
list(JOIN ids " " ids)

# The package: doc directory is a symlink to shoal's (copyright, changelog), as dh makes it.
execute_process(COMMAND ${DPKG} --print-architecture OUTPUT_VARIABLE arch
                OUTPUT_STRIP_TRAILING_WHITESPACE COMMAND_ERROR_IS_FATAL ANY)
set(v "${CPACK_PACKAGE_VERSION}")
file(MAKE_DIRECTORY "${dbg}/usr/share/doc" "${dbg}/DEBIAN")
file(CREATE_LINK shoal "${dbg}/usr/share/doc/shoal-dbgsym" SYMBOLIC)
file(GLOB_RECURSE dfiles LIST_DIRECTORIES false RELATIVE "${dbg}" "${dbg}/usr/lib/*")
set(md5 "")
set(size 0)
foreach(f IN LISTS dfiles)
  file(MD5 "${dbg}/${f}" sum)
  string(APPEND md5 "${sum}  ${f}\n")
  file(SIZE "${dbg}/${f}" s)
  math(EXPR size "${size} + (${s} + 1023) / 1024")
endforeach()
file(WRITE "${dbg}/DEBIAN/md5sums" "${md5}")
file(WRITE "${dbg}/DEBIAN/control" "Package: shoal-dbgsym
Source: shoal
Version: ${v}
Auto-Built-Package: debug-symbols
Architecture: ${arch}
Maintainer: ${CPACK_PACKAGE_CONTACT}
Installed-Size: ${size}
Depends: shoal (= ${v})
Section: debug
Priority: optional
Description: debug symbols for shoal
Build-Ids: ${ids}
")
execute_process(COMMAND ${DPKG_DEB} --root-owner-group -Zxz --build "${dbg}"
                        "${CPACK_OUTPUT_FILE_PREFIX}/shoal-dbgsym_${v}_${arch}.ddeb"
                COMMAND_ERROR_IS_FATAL ANY OUTPUT_QUIET)
message(STATUS "dbgsym: ${CPACK_OUTPUT_FILE_PREFIX}/shoal-dbgsym_${v}_${arch}.ddeb (build ids ${ids})")
