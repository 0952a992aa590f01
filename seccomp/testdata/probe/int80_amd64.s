#include "textflag.h"

// func int80(nr uintptr) uintptr: a 32-bit (i386 ABI) system call from 64-bit code.
TEXT ·int80(SB),NOSPLIT,$0-16
	MOVQ nr+0(FP), AX
	INT $0x80
	MOVQ AX, ret+8(FP)
	RET
