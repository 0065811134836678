# Included by CMake after Platform/Windows-GNU.cmake: append the Windows system libs a
# static OpenSSL 3 needs (ws2_32, crypt32, bcrypt) to every C/C++ link line.
set(CMAKE_C_STANDARD_LIBRARIES_INIT   "-lws2_32 -lgdi32 -lcrypt32 -lbcrypt -ladvapi32 -luser32 -lkernel32")
set(CMAKE_CXX_STANDARD_LIBRARIES_INIT "${CMAKE_C_STANDARD_LIBRARIES_INIT}")
