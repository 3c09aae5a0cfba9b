/* Wine 8 lacks bcryptprimitives.dll, whose ProcessPrng the Rust standard library imports on
 * Windows. This stand-in forwards to BCryptGenRandom so ferry.exe runs under wine in the tests.
 * It is never shipped with ferry.exe: real Windows 10+ has the genuine DLL. */
#include <windows.h>
#include <bcrypt.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    return BCryptGenRandom(NULL, data, (ULONG)len, BCRYPT_USE_SYSTEM_PREFERRED_RNG) == 0;
}
