/* Stand-in for Windows 10+'s bcryptprimitives.dll, which Wine 8.0 lacks.
 * Rust std (>= 1.78) imports ProcessPrng from it. Forward to RtlGenRandom
 * (advapi32!SystemFunction036), which Wine implements. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buf, ULONG len); /* RtlGenRandom */

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE pbData, SIZE_T cbData)
{
    while (cbData > 0) {
        ULONG chunk = cbData > 0x40000000 ? 0x40000000 : (ULONG)cbData;
        if (!SystemFunction036(pbData, chunk))
            return FALSE;
        pbData += chunk;
        cbData -= chunk;
    }
    return TRUE;
}

BOOL WINAPI DllMain(HINSTANCE h, DWORD reason, LPVOID r)
{
    (void)h; (void)reason; (void)r;
    return TRUE;
}
