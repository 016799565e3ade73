/* SPDX-License-Identifier: MIT */
/* User-space stand-ins for the kernel's return and indirect-branch thunks,
 * so code built with -mfunction-return=thunk-extern and
 * -mindirect-branch=thunk-extern runs in a test program: a return thunk
 * that returns, and retpolines (as the kernel's). */
	.text
	.globl __x86_return_thunk
__x86_return_thunk:
	ret
	int3
.irp reg,rax,rbx,rcx,rdx,rsi,rdi,rbp,r8,r9,r10,r11,r12,r13,r14,r15
	.globl __x86_indirect_thunk_\reg
__x86_indirect_thunk_\reg:
	call 1f
2:	pause
	lfence
	jmp 2b
1:	mov %\reg, (%rsp)
	ret
.endr
	.section .note.GNU-stack,"",@progbits
