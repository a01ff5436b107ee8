# keel_sdk_install_part(TARGET tgt EXPORT set NAME pc-name DESCRIPTION text
#                       [HEADERS files...] [REQUIRES pc-modules...] [INTERFACE])
# Installs one SDK library the way libkeel-client is installed: the archive into the export set
# (find_package(keel) -> keel::<EXPORT_NAME>), its public headers under include/keel, and a
# pkg-config file <pc-name>.pc whose Requires lists the pkg-config modules it needs.
include(GNUInstallDirs)
function(keel_sdk_install_part)
  cmake_parse_arguments(P "INTERFACE" "TARGET;EXPORT;NAME;DESCRIPTION" "HEADERS;REQUIRES" ${ARGN})
  if(P_INTERFACE)
    install(TARGETS ${P_TARGET} EXPORT ${P_EXPORT})
    set(KEEL_PC_LIBS "")
  else()
    install(TARGETS ${P_TARGET} EXPORT ${P_EXPORT} ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
    set(KEEL_PC_LIBS "-L\${libdir} -l${P_NAME}")
  endif()
  if(P_HEADERS)
    install(FILES ${P_HEADERS} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/keel)
  endif()
  set(KEEL_PC_NAME ${P_NAME})
  set(KEEL_PC_DESCRIPTION ${P_DESCRIPTION})
  list(JOIN P_REQUIRES " " KEEL_PC_REQUIRES)
  string(REGEX REPLACE "[^/]+" ".." KEEL_PC_TO_PREFIX "${CMAKE_INSTALL_LIBDIR}/pkgconfig")
  configure_file(${PROJECT_SOURCE_DIR}/cmake/install/keel-sdk-part.pc.in
                 ${CMAKE_CURRENT_BINARY_DIR}/${P_NAME}.pc @ONLY)
  install(FILES ${CMAKE_CURRENT_BINARY_DIR}/${P_NAME}.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endfunction()
