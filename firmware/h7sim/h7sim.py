#!/usr/bin/env python3
"""h7sim — run the STM32H743 firmware ELF on an emulated Cortex-M7 with an STM32H743 register model.

No STM32H743 board is attached to CI and QEMU has no STM32H7 machine, so this runs the *real*
H743 ELF (the one `probe-rs run --chip STM32H743ZITx` would flash) in Unicorn's Cortex-M7 with:

* the chip's memory map (RM0433 §2.3.2): flash 2 MB, ITCM, DTCM, AXI-SRAM, SRAM1-4, backup SRAM;
  an access anywhere else is an error (as a bus fault on the chip would be);
* the peripherals the firmware touches as a *register file* (reads return the last value
  written, from RM0433's reset values) plus the status bits the silicon sets and the HAL polls:
  RCC ready flags following their ON bits, CFGR.SWS following SW, PWR ACTVOSRDY/VOSRDY, the
  SYSCFG compensation cell READY, FLASH_ACR read-back, DBGMCU_IDC (revision V or Y);
* the Cortex-M7 system registers: CPUID, CCR, the cache ID registers (CLIDR/CTR/CCSIDR of 16 KB
  I- and D-caches) and maintenance operations, DCB (DHCSR.C_DEBUGEN: this script is the
  debugger), DWT with its software lock and a CYCCNT that counts *instructions executed*;
* semihosting SYS_EXIT (BKPT 0xAB) → the exit code; RTT up-buffer 0 drained like probe-rs
  (blocking mode), decoded by `defmt-print`;
* at the end, the clock tree the firmware programmed, decoded from the registers and checked
  against RM0433 (flash wait states: Table 17) and the datasheet's limits.

What it cannot tell: anything about timing (no cycles, wait states or cache effects: CYCCNT is an
instruction count) or whether the silicon accepts the configuration (the PLL locks because its
ready bit follows its enable bit). See README.md.

Exit status: the firmware's semihosting exit (0 success, 1 failure) when the clock checks pass;
1 on a failed check, a fault (UDF, invalid memory access, unexpected BKPT) or an unexpected
sleep; 124 when --max-instructions or --timeout runs out; 2 on a usage error.
"""
from __future__ import annotations

import argparse
import ctypes
import mmap
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time

try:
    from unicorn import (Uc, UcError, UC_ARCH_ARM, UC_MODE_THUMB, UC_MODE_MCLASS, UC_HOOK_BLOCK,
                         UC_HOOK_CODE, UC_HOOK_INTR, UC_HOOK_MEM_INVALID, UC_PROT_ALL,
                         UC_MEM_READ_UNMAPPED, UC_MEM_WRITE_UNMAPPED, UC_MEM_FETCH_UNMAPPED,
                         UC_MEM_READ_PROT, UC_MEM_WRITE_PROT, UC_MEM_FETCH_PROT,
                         UC_ERR_INSN_INVALID)
    from unicorn import arm_const as A
    from unicorn.unicorn_py3.unicorn import uclib  # the loaded libunicorn (unicorn 2.1.x layout)
except ImportError:  # pragma: no cover - reported to the user
    sys.stderr.write("h7sim: error: the `unicorn` Python package is missing "
                     "(pip install -r firmware/h7sim/requirements.txt)\n")
    sys.exit(2)

# ---------------------------------------------------------------------------------------------
# ELF32 (little-endian ARM) — just what is needed: PT_LOAD segments and the symbol table.
# ---------------------------------------------------------------------------------------------


class Elf:
    def __init__(self, path: str):
        with open(path, "rb") as f:
            self.raw = f.read()
        b = self.raw
        if b[:4] != b"\x7fELF" or b[4] != 1 or b[5] != 1:
            raise ValueError(f"{path}: not a little-endian ELF32 file")
        (e_type, e_machine, _ver, self.entry, e_phoff, e_shoff, _flags, _ehsize, e_phentsize,
         e_phnum, e_shentsize, e_shnum, _shstrndx) = struct.unpack_from("<HHIIIIIHHHHHH", b, 16)
        if e_machine != 40:
            raise ValueError(f"{path}: not an ARM ELF (e_machine {e_machine})")
        # (paddr, data, memsz, flags): loaded at the physical (load) address, as a probe flashes.
        self.segments = []
        for i in range(e_phnum):
            (p_type, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_flags,
             _align) = struct.unpack_from("<IIIIIIII", b, e_phoff + i * e_phentsize)
            if p_type == 1 and p_filesz:
                self.segments.append((p_paddr, b[p_offset:p_offset + p_filesz], p_memsz, p_flags))
        self.sections = []   # (name_off, type, addr, offset, size, link, flags)
        for i in range(e_shnum):
            (name, typ, flags, addr, off, size, link, _info, _al,
             _ent) = struct.unpack_from("<IIIIIIIIII", b, e_shoff + i * e_shentsize)
            self.sections.append((name, typ, addr, off, size, link, flags))
        self.symbols: dict[str, tuple[int, int]] = {}
        for (_n, typ, _a, off, size, link, _f) in self.sections:
            if typ != 2:  # SHT_SYMTAB
                continue
            stroff = self.sections[link][3]
            for k in range(size // 16):
                st_name, st_value, st_size, _info, _other, _shndx = struct.unpack_from(
                    "<IIIBBH", b, off + k * 16)
                if st_name:
                    end = b.index(b"\0", stroff + st_name)
                    name = b[stroff + st_name:end].decode("utf-8", "replace")
                    self.symbols.setdefault(name, (st_value, st_size))
        # Executable code ranges (section flags SHF_EXECINSTR), to find WFI instructions.
        self.code = [(addr, b[off:off + size]) for (_n, typ, addr, off, size, _l, flags)
                     in self.sections if typ == 1 and flags & 0x4 and size]

    def sym(self, name):
        v = self.symbols.get(name)
        return None if v is None else v[0]


# ---------------------------------------------------------------------------------------------
# The chip: memory map and the register model.
# ---------------------------------------------------------------------------------------------

# RM0433 Rev 7 §2.3.2 (memory map) — what a bus master can reach on an STM32H743.
MEMORY = [
    # (name, base, size, what)
    ("ITCM", 0x0000_0000, 64 << 10, "ITCM-RAM"),
    ("FLASH", 0x0800_0000, 2 << 20, "flash banks 1 and 2"),
    ("DTCM", 0x2000_0000, 128 << 10, "DTCM-RAM"),
    ("AXISRAM", 0x2400_0000, 512 << 10, "D1 AXI-SRAM"),
    ("SRAM1-3", 0x3000_0000, 288 << 10, "D2 AHB SRAM1 128K + SRAM2 128K + SRAM3 32K"),
    ("SRAM4", 0x3800_0000, 64 << 10, "D3 SRAM4"),
    ("BKPSRAM", 0x3880_0000, 4 << 10, "backup SRAM"),
]

# Peripheral address ranges (RM0433 Table 8, register boundary addresses), mapped to the register
# model: an access inside one is a register access (unmodelled registers are logged once); an
# access outside all of them and outside MEMORY is an error. Rounded out to 4 KB pages.
PERIPHERAL_BUSES = [
    ("APB1 (D2)", 0x4000_0000, 0x4000_D400),
    ("APB2 (D2)", 0x4001_0000, 0x4001_8000),
    ("AHB1 (D2)", 0x4002_0000, 0x4008_0000),
    ("AHB2 (D2)", 0x4802_0000, 0x4802_3000),
    ("APB3 (D1)", 0x5000_0000, 0x5000_4000),
    ("AHB3 (D1)", 0x5100_0000, 0x5200_9000),
    ("APB4 (D3)", 0x5800_0000, 0x5800_7000),
    ("AHB4 (D3)", 0x5802_0000, 0x5802_7000),
    ("DBGMCU", 0x5C00_1000, 0x5C00_2000),
    ("Cortex-M7 PPB", 0xE000_0000, 0xE010_0000),
]

RCC = 0x5802_4400
PWR = 0x5802_4800
SYSCFG = 0x5800_0400
FLASH_R = 0x5200_2000
DBGMCU = 0x5C00_1000
SCB = 0xE000_ED00
DWT = 0xE000_1000
DCB = 0xE000_EDF0
SYST = 0xE000_E010

REV_ID = {"V": 0x2003, "Y": 0x1003}
DEV_ID = 0x450  # STM32H742/743/753/750

# Register names and reset values (RM0433 Rev 7; Cortex-M7 TRM r1p2 / ARMv7-M ARM for the PPB).
# A register listed here is "modelled": its reads are plain register-file reads unless a status
# rule below computes bits. Reads of anything else in a mapped peripheral range are logged once.
REGS = {
    # RCC (RM0433 §8.7)
    RCC + 0x000: ("RCC_CR", 0x0000_0025),          # HSION, HSIRDY, HSIDIVF
    RCC + 0x004: ("RCC_HSICFGR", 0x4000_0000),
    RCC + 0x008: ("RCC_CRRCR", 0x0000_0000),
    RCC + 0x00C: ("RCC_CSICFGR", 0x2000_0000),
    RCC + 0x010: ("RCC_CFGR", 0x0000_0000),
    RCC + 0x018: ("RCC_D1CFGR", 0x0000_0000),
    RCC + 0x01C: ("RCC_D2CFGR", 0x0000_0000),
    RCC + 0x020: ("RCC_D3CFGR", 0x0000_0000),
    RCC + 0x028: ("RCC_PLLCKSELR", 0x0202_0200),   # DIVM1..3 = 32, PLLSRC = HSI
    RCC + 0x02C: ("RCC_PLLCFGR", 0x01FF_0000),
    RCC + 0x030: ("RCC_PLL1DIVR", 0x0101_0280),
    RCC + 0x034: ("RCC_PLL1FRACR", 0x0000_0000),
    RCC + 0x038: ("RCC_PLL2DIVR", 0x0101_0280),
    RCC + 0x03C: ("RCC_PLL2FRACR", 0x0000_0000),
    RCC + 0x040: ("RCC_PLL3DIVR", 0x0101_0280),
    RCC + 0x044: ("RCC_PLL3FRACR", 0x0000_0000),
    RCC + 0x04C: ("RCC_D1CCIPR", 0x0000_0000),
    RCC + 0x050: ("RCC_D2CCIP1R", 0x0000_0000),
    RCC + 0x054: ("RCC_D2CCIP2R", 0x0000_0000),
    RCC + 0x058: ("RCC_D3CCIPR", 0x0000_0000),
    RCC + 0x070: ("RCC_BDCR", 0x0000_0000),
    RCC + 0x074: ("RCC_CSR", 0x0000_0000),
    RCC + 0x0D4: ("RCC_AHB3ENR", 0x0000_0000),
    RCC + 0x0D8: ("RCC_AHB1ENR", 0x0000_0000),
    RCC + 0x0DC: ("RCC_AHB2ENR", 0x0000_0000),
    RCC + 0x0E0: ("RCC_AHB4ENR", 0x0000_0000),
    RCC + 0x0E4: ("RCC_APB3ENR", 0x0000_0000),
    RCC + 0x0E8: ("RCC_APB1LENR", 0x0000_0000),
    RCC + 0x0EC: ("RCC_APB1HENR", 0x0000_0000),
    RCC + 0x0F0: ("RCC_APB2ENR", 0x0000_0000),
    RCC + 0x0F4: ("RCC_APB4ENR", 0x0001_0000),
    RCC + 0x0D0: ("RCC_RSR", 0x00FE_0000),
    # PWR (RM0433 §6.8)
    PWR + 0x00: ("PWR_CR1", 0xF000_C000),
    PWR + 0x04: ("PWR_CSR1", 0x0000_4000),         # ACTVOS = VOS3, ACTVOSRDY computed
    PWR + 0x08: ("PWR_CR2", 0x0000_0000),
    PWR + 0x0C: ("PWR_CR3", 0x0000_0006),          # SCUEN, LDOEN (LDO supply at reset)
    PWR + 0x10: ("PWR_CPUCR", 0x0000_0000),
    PWR + 0x18: ("PWR_D3CR", 0x0000_4000),         # VOS = 0b01 = VOS3
    # SYSCFG (RM0433 §12.3)
    SYSCFG + 0x20: ("SYSCFG_CCCSR", 0x0000_0000),
    SYSCFG + 0x24: ("SYSCFG_CCVR", 0x0000_0000),
    SYSCFG + 0x28: ("SYSCFG_CCCR", 0x0000_0000),
    SYSCFG + 0x2C: ("SYSCFG_PWRCR", 0x0000_0000),  # ODEN (revision V)
    # FLASH (RM0433 §4.9)
    FLASH_R + 0x000: ("FLASH_ACR", 0x0000_0037),   # LATENCY 7, WRHIGHFREQ 3
    FLASH_R + 0x100: ("FLASH_ACR (bank 2 alias)", 0x0000_0037),
    # DBGMCU (RM0433 §60.5.8)
    DBGMCU + 0x00: ("DBGMCU_IDC", 0),
    DBGMCU + 0x04: ("DBGMCU_CR", 0),
    # SysTick, NVIC controls, SCB (ARMv7-M ARM B3.2, Cortex-M7 TRM §4)
    0xE000_E004: ("ICTR", 0x0000_0007),
    0xE000_E008: ("ACTLR", 0x0000_0000),
    SYST + 0x0: ("SYST_CSR", 0x0000_0004),
    SYST + 0x4: ("SYST_RVR", 0),
    SYST + 0x8: ("SYST_CVR", 0),
    SYST + 0xC: ("SYST_CALIB", 0x4000_0000),
    SCB + 0x00: ("CPUID", 0x411F_C271),            # ARM, r1p1, Cortex-M7 (STM32H743 revision V/Y)
    SCB + 0x04: ("ICSR", 0),
    SCB + 0x08: ("VTOR", 0),
    SCB + 0x0C: ("AIRCR", 0xFA05_0000),
    SCB + 0x10: ("SCR", 0),
    SCB + 0x14: ("CCR", 0x0000_0200),              # STKALIGN; IC (17) and DC (16) off at reset
    SCB + 0x18: ("SHPR1", 0),
    SCB + 0x1C: ("SHPR2", 0),
    SCB + 0x20: ("SHPR3", 0),
    SCB + 0x24: ("SHCSR", 0),
    SCB + 0x28: ("CFSR", 0),
    SCB + 0x2C: ("HFSR", 0),
    SCB + 0x30: ("DFSR", 0),
    SCB + 0x34: ("MMFAR", 0),
    SCB + 0x38: ("BFAR", 0),
    SCB + 0x3C: ("AFSR", 0),
    SCB + 0x78: ("CLIDR", 0x0900_0003),            # L1 I + D, LoUU = LoC = 1
    SCB + 0x7C: ("CTR", 0x8303_C003),              # 8-word (32-byte) lines
    SCB + 0x80: ("CCSIDR", 0),                     # computed from CSSELR
    SCB + 0x84: ("CSSELR", 0),
    SCB + 0x88: ("CPACR", 0),
    DCB + 0x0: ("DHCSR", 0),                       # computed: C_DEBUGEN
    DCB + 0x4: ("DCRSR", 0),
    DCB + 0x8: ("DCRDR", 0),
    DCB + 0xC: ("DEMCR", 0),
    0xE000_EF00: ("STIR", 0),
    0xE000_EF34: ("FPCCR", 0xC000_0000),           # ASPEN, LSPEN
    0xE000_EF38: ("FPCAR", 0),
    0xE000_EF3C: ("FPDSCR", 0),
    0xE000_EF90: ("ITCMCR", 0x0000_0039),
    0xE000_EF94: ("DTCMCR", 0x0000_0039),
    0xE000_EF98: ("AHBPCR", 0),
    0xE000_EF9C: ("CACR", 0),
    0xE000_EFA0: ("AHBSCR", 0),
    0xE000_EFA8: ("ABFSR", 0),
    # DWT (ARMv7-M ARM C1.8)
    DWT + 0x000: ("DWT_CTRL", 0x4000_0000),        # NUMCOMP = 4; CYCCNTENA off
    DWT + 0x004: ("DWT_CYCCNT", 0),                # computed: instructions executed
    DWT + 0x008: ("DWT_CPICNT", 0),
    DWT + 0x00C: ("DWT_EXCCNT", 0),
    DWT + 0x010: ("DWT_SLEEPCNT", 0),
    DWT + 0x014: ("DWT_LSUCNT", 0),
    DWT + 0x018: ("DWT_FOLDCNT", 0),
    DWT + 0xFB0: ("DWT_LAR", 0),
    DWT + 0xFB4: ("DWT_LSR", 0x0000_0003),         # lock implemented, locked
}
# Cache maintenance operations (write-only, Cortex-M7 TRM §4.1.1): accepted, counted.
CACHE_OPS = {
    0xE000_EF50: "ICIALLU", 0xE000_EF58: "ICIMVAU", 0xE000_EF5C: "DCIMVAC",
    0xE000_EF60: "DCISW", 0xE000_EF64: "DCCMVAU", 0xE000_EF68: "DCCMVAC",
    0xE000_EF6C: "DCCSW", 0xE000_EF70: "DCCIMVAC", 0xE000_EF74: "DCCISW",
    0xE000_EF78: "BPIALL",
}
for a in range(0xE000_E100, 0xE000_E500, 4):   # NVIC ISER/ICER/ISPR/ICPR/IABR/IPR
    REGS.setdefault(a, ("NVIC", 0))

# CCSIDR of the STM32H743's Cortex-M7 (16 KB I-cache: 2-way, 256 sets; 16 KB D-cache: 4-way,
# 128 sets; 32-byte lines; WT/WB/RA/WA supported): NumSets-1 << 13 | Assoc-1 << 3 | LineSize.
CCSIDR_D = 0xF000_0000 | (127 << 13) | (3 << 3) | 1   # 0xF00FE019
CCSIDR_I = 0xF000_0000 | (255 << 13) | (1 << 3) | 1   # 0xF01FE009

HSI_HZ = 64_000_000
CSI_HZ = 4_000_000

# RM0433 Rev 7, Table 17 "FLASH recommended number of wait states and programming delay":
# (upper bound of the AXI clock in MHz, inclusive, LATENCY, WRHIGHFREQ) for each VCORE range.
# The same table is transcribed in stm32h7xx-hal 0.16 `rcc/mod.rs` `flash_setup` (which cites
# "RM0433 Rev 7 Table 17"); both agree entry for entry.
FLASH_TABLE = {
    0: [(70, 0, 0), (140, 1, 1), (185, 2, 1), (210, 2, 2), (225, 3, 2), (240, 4, 2)],
    1: [(70, 0, 0), (140, 1, 1), (185, 2, 1), (210, 2, 2), (225, 3, 2)],
    2: [(55, 0, 0), (110, 1, 1), (165, 2, 1), (225, 3, 2)],
    3: [(45, 0, 0), (90, 1, 1), (135, 2, 1), (180, 3, 2), (225, 4, 2)],
}
# Maximum clocks per VCORE range (STM32H743xI datasheet DS12110, general operating conditions):
# (CPU sys_d1cpre_ck, AXI/AHB hclk, APBx) in MHz. VOS0 exists on revision V only.
VOS_LIMITS = {0: (480, 240, 120), 1: (400, 200, 100), 2: (300, 150, 75), 3: (200, 100, 50)}
# PLL VCO ranges (DS12110 PLL characteristics): wide VCOH 192–836 MHz (revision Y), 192–960 MHz
# (revision V); medium VCOL 150–420 MHz (reference clock 1–2 MHz only).
VCO_WIDE = {"V": (192e6, 960e6), "Y": (192e6, 836e6)}
VCO_MEDIUM = (150e6, 420e6)
PLLRGE = {0: (1e6, 2e6), 1: (2e6, 4e6), 2: (4e6, 8e6), 3: (8e6, 16e6)}

DXPRE = {8: 2, 9: 4, 10: 8, 11: 16, 12: 64, 13: 128, 14: 256, 15: 512}   # D1CPRE/HPRE (4 bits)
PPRE = {4: 2, 5: 4, 6: 8, 7: 16}                                          # DxPPRE (3 bits)


def div4(v):
    return DXPRE.get(v & 0xF, 1)


def div3(v):
    return PPRE.get(v & 0x7, 1)


def field(v, lo, width):
    return (v >> lo) & ((1 << width) - 1)


class Regs:
    """The register file with the status rules the silicon applies."""

    def __init__(self, rev: str, debugger: bool, sim: "Sim | None" = None):
        self.rev = rev
        self.debugger = debugger
        self.sim = sim
        self.v = {a: reset for a, (_n, reset) in REGS.items()}
        self.v[DBGMCU] = (REV_ID[rev] << 16) | DEV_ID
        self.cr3_written = False
        self.warned: set = set()
        self.notes: list[str] = []
        self.cache_ops: dict[str, int] = {}
        self.dwt_ignored = 0
        # DWT CYCCNT: value at the anchor, and the instruction count at the anchor.
        self.cyc_value = 0
        self.cyc_anchor = 0
        self.violations: list[str] = []
        self.events: list[str] = []

    # -- instruction counter (the Sim's block hook advances it) --------------------------------
    def icount(self):
        return self.sim.icount if self.sim else 0

    def counting(self):
        return bool(self.v[DCB + 0xC] & (1 << 24)) and bool(self.v[DWT] & 1)

    def cyccnt(self):
        if self.counting():
            return (self.cyc_value + self.icount() - self.cyc_anchor) & 0xFFFF_FFFF
        return self.cyc_value

    def _reanchor(self):
        self.cyc_value = self.cyccnt()
        self.cyc_anchor = self.icount()

    def pc(self):
        return self.sim.pc() if self.sim else 0

    # -- reads -----------------------------------------------------------------------------
    def read32(self, a: int) -> int:
        v = self.v.get(a)
        if a == RCC:  # RCC_CR: every ready flag follows its enable bit
            v = v & ~((1 << 2) | (1 << 8) | (1 << 13) | (1 << 17) | (1 << 25) | (1 << 27) | (1 << 29))
            for on, rdy in ((0, 2), (7, 8), (12, 13), (16, 17), (24, 25), (26, 27), (28, 29)):
                if v >> on & 1:
                    v |= 1 << rdy
            v |= (1 << 14) | (1 << 15) | (1 << 5)   # D1CKRDY, D2CKRDY, HSIDIVF
            return v
        if a == RCC + 0x10:  # RCC_CFGR: SWS (5:3) = SW (2:0)
            return (v & ~(7 << 3)) | ((v & 7) << 3)
        if a == RCC + 0x70:  # RCC_BDCR: LSERDY (1) follows LSEON (0)
            return (v & ~2) | ((v & 1) << 1)
        if a == RCC + 0x74:  # RCC_CSR: LSIRDY (1) follows LSION (0)
            return (v & ~2) | ((v & 1) << 1)
        if a == PWR + 0x04:  # PWR_CSR1: ACTVOS mirrors D3CR.VOS; ACTVOSRDY once CR3 is written
            vos = field(self.v[PWR + 0x18], 14, 2)
            v = (v & ~((3 << 14) | (1 << 13))) | (vos << 14)
            if self.cr3_written:
                v |= 1 << 13
            return v
        if a == PWR + 0x08:  # PWR_CR2: BRRDY (16) follows BREN (0)
            return (v & ~(1 << 16)) | ((v & 1) << 16)
        if a == PWR + 0x18:  # PWR_D3CR: VOSRDY (13): the regulator settles at once
            return v | (1 << 13)
        if a == SYSCFG + 0x20:  # SYSCFG_CCCSR: READY (8) follows EN (0)
            return (v & ~(1 << 8)) | ((v & 1) << 8)
        if a == SCB + 0x80:  # CCSIDR for the cache CSSELR selects
            sel = self.v[SCB + 0x84]
            if sel == 0:
                return CCSIDR_D
            if sel == 1:
                return CCSIDR_I
            self.warn(a, f"CCSIDR read with CSSELR={sel:#x} (no such cache on a Cortex-M7 L1)")
            return 0
        if a == DCB:  # DHCSR: C_DEBUGEN (0) when the debugger (this script) is attached
            return (0x0003_0000 | 1) if self.debugger else 0x0002_0000  # + S_REGRDY/S_HALT=0
        if a == DWT + 0x4:
            return self.cyccnt()
        if a in CACHE_OPS:
            return 0
        if v is None:
            self.warn(a, "read of an unmodelled register: returns the last value written (or 0)")
            return self.v.get(a, 0)
        return v

    # -- writes ----------------------------------------------------------------------------
    def write32(self, a: int, val: int):
        val &= 0xFFFF_FFFF
        if a in CACHE_OPS:
            name = CACHE_OPS[a]
            self.cache_ops[name] = self.cache_ops.get(name, 0) + 1
            return
        if a in (DBGMCU, SCB + 0x00, SCB + 0x78, SCB + 0x7C, SCB + 0x80, DWT + 0xFB4):
            self.warn(a, f"write of {val:#x} to a read-only register (ignored)", kind="write")
            return
        if a == DCB:  # DHCSR writes need the DBGKEY; software has no business here
            self.warn(a, f"write of {val:#x} to DHCSR (ignored)", kind="write")
            return
        if a == DWT + 0xFB0:  # DWT_LAR: the Cortex-M7 software lock (CoreSight)
            self.v[DWT + 0xFB4] = 0x1 if val == 0xC5AC_CE55 else 0x3
            self.v[a] = val
            return
        if DWT <= a < DWT + 0xFB0 and self.v[DWT + 0xFB4] & 2:
            # Locked: the M7 ignores software writes to the DWT until LAR is written.
            self.dwt_ignored += 1
            self.warn(a, f"write of {val:#x} to the DWT while it is locked (ignored, as on the M7)",
                      kind="write")
            return
        if a == DWT + 0x4:
            self.cyc_value = val
            self.cyc_anchor = self.icount()
            return
        if a in (DWT, DCB + 0xC):
            self._reanchor()
            if a == DWT:
                val = (val & 0x0FFF_FFFF) | 0x4000_0000  # NUMCOMP is read-only
            self.v[a] = val
            return
        if a not in REGS:
            self.warn(a, f"write of {val:#x} to an unmodelled register (kept in the register file)",
                      kind="write")
            self.v[a] = val
            return
        if a == PWR + 0x0C:
            self.cr3_written = True
        if a == SYSCFG + 0x2C and val & 1 and not self.v[SYSCFG + 0x2C] & 1:
            vos = field(self.v[PWR + 0x18], 14, 2)
            if self.rev != "V":
                self.violation(f"SYSCFG_PWRCR.ODEN set on revision {self.rev}, which has no VOS0")
            elif vos != 0b11:
                self.violation(f"SYSCFG_PWRCR.ODEN set while D3CR.VOS = {vos:#04b}: VOS0 must be "
                               "entered from VOS1 (RM0433 §6.6.2)")
            if not self.v[RCC + 0xF4] & 2:
                self.violation("SYSCFG_PWRCR written with the SYSCFG clock off (RCC_APB4ENR.SYSCFGEN)")
        if a == PWR + 0x18:
            self.events.append(f"PWR_D3CR.VOS = {field(val, 14, 2):#04b} (pc={self.pc():#010x})")
        if a == RCC + 0x10 and (val & 7) != (self.v[a] & 7):
            self.events.append(f"RCC_CFGR.SW = {val & 7} (pc={self.pc():#010x})")
        if a == FLASH_R:
            self.events.append(f"FLASH_ACR = {val:#x} (pc={self.pc():#010x})")
        self.v[a] = val
        if a in (RCC + 0x00, RCC + 0x10, RCC + 0x18, RCC + 0x28, RCC + 0x2C, RCC + 0x30,
                 PWR + 0x18, SYSCFG + 0x2C, FLASH_R):
            self.check_live(REGS[a][0])

    # -- sub-word access on top of the 32-bit register file --------------------------------
    def read(self, addr: int, size: int) -> int:
        a = addr & ~3
        sh = (addr & 3) * 8
        return (self.read32(a) >> sh) & ((1 << (size * 8)) - 1)

    def write(self, addr: int, size: int, value: int):
        a = addr & ~3
        if size == 4:
            self.write32(a, value)
            return
        sh = (addr & 3) * 8
        mask = ((1 << (size * 8)) - 1) << sh
        old = self.v.get(a, 0)
        self.write32(a, (old & ~mask) | ((value << sh) & mask))

    # -- diagnostics -----------------------------------------------------------------------
    def warn(self, a, what, kind="read"):
        key = (kind, a)
        if key in self.warned:
            return
        self.warned.add(key)
        name = REGS.get(a, (None,))[0]
        where = f"{a:#010x}" + (f" ({name})" if name else "")
        line = f"h7sim: warning: {where}: {what}; pc={self.pc():#010x} (logged once)"
        self.notes.append(line)
        sys.stderr.write(line + "\n")

    def violation(self, what):
        line = f"{what} (pc={self.pc():#010x})"
        if line not in self.violations:
            self.violations.append(line)
            sys.stderr.write(f"h7sim: error: {line}\n")

    # -- the clock tree --------------------------------------------------------------------
    def vos(self):
        """Effective voltage scale 0..3 (0 = VOS1 + ODEN on revision V)."""
        d3 = field(self.v[PWR + 0x18], 14, 2)
        scale = {0b01: 3, 0b10: 2, 0b11: 1}.get(d3, 3)
        if scale == 1 and self.v[SYSCFG + 0x2C] & 1 and self.rev == "V":
            return 0
        return scale

    def clocks(self):
        """Decode the clock tree from the registers: a dict of frequencies and fields."""
        v = self.v
        c = {}
        cr = self.read32(RCC)
        hsidiv = 1 << field(cr, 3, 2)
        c["hsi"] = HSI_HZ / hsidiv
        c["hsidiv"] = hsidiv
        sel = v[RCC + 0x28]
        src = field(sel, 0, 2)
        c["pllsrc"] = ["HSI", "CSI", "HSE", "none"][src]
        src_hz = {0: c["hsi"], 1: CSI_HZ}.get(src)  # HSE frequency is unknown to the model
        c["divm1"] = field(sel, 4, 6)
        cfg = v[RCC + 0x2C]
        c["pll1fracen"] = cfg & 1
        c["pll1vcosel"] = field(cfg, 1, 1)
        c["pll1rge"] = field(cfg, 2, 2)
        c["divp1en"], c["divq1en"], c["divr1en"] = field(cfg, 16, 1), field(cfg, 17, 1), field(cfg, 18, 1)
        d = v[RCC + 0x30]
        c["divn1"] = field(d, 0, 9) + 1
        c["divp1"] = field(d, 9, 7) + 1
        c["divq1"] = field(d, 16, 7) + 1
        c["divr1"] = field(d, 24, 7) + 1
        frac = field(v[RCC + 0x34], 3, 13) if c["pll1fracen"] else 0
        c["fracn1"] = frac
        c["pll1on"] = field(cr, 24, 1)
        c["ref1"] = c["vco1"] = c["pll1_p"] = c["pll1_q"] = c["pll1_r"] = None
        if src_hz and c["divm1"]:
            c["ref1"] = src_hz / c["divm1"]
            c["vco1"] = c["ref1"] * (c["divn1"] + frac / 8192)
            c["pll1_p"] = c["vco1"] / c["divp1"]
            c["pll1_q"] = c["vco1"] / c["divq1"]
            c["pll1_r"] = c["vco1"] / c["divr1"]
        cfgr = self.read32(RCC + 0x10)
        sw, sws = field(cfgr, 0, 3), field(cfgr, 3, 3)
        c["sw"], c["sws"] = sw, sws
        c["sys_src"] = {0: "HSI", 1: "CSI", 2: "HSE", 3: "PLL1"}.get(sws, f"reserved {sws}")
        if sws == 0:
            sys_ck = c["hsi"]
        elif sws == 1:
            sys_ck = CSI_HZ
        elif sws == 3 and c["pll1on"] and c["divp1en"]:
            sys_ck = c["pll1_p"]
        else:
            sys_ck = None
        c["sys_ck"] = sys_ck
        d1 = v[RCC + 0x18]
        c["d1cpre"], c["hpre"], c["d1ppre"] = div4(field(d1, 8, 4)), div4(field(d1, 0, 4)), div3(field(d1, 4, 3))
        d2 = v[RCC + 0x1C]
        c["d2ppre1"], c["d2ppre2"] = div3(field(d2, 4, 3)), div3(field(d2, 8, 3))
        c["d3ppre"] = div3(field(v[RCC + 0x20], 4, 3))
        if sys_ck:
            c["cpu"] = sys_ck / c["d1cpre"]
            c["hclk"] = c["cpu"] / c["hpre"]
            c["apb3"] = c["hclk"] / c["d1ppre"]
            c["apb1"] = c["hclk"] / c["d2ppre1"]
            c["apb2"] = c["hclk"] / c["d2ppre2"]
            c["apb4"] = c["hclk"] / c["d3ppre"]
        acr = v[FLASH_R]
        c["latency"], c["wrhighfreq"] = field(acr, 0, 4), field(acr, 4, 2)
        c["vos"] = self.vos()
        c["d3cr_vos"] = field(v[PWR + 0x18], 14, 2)
        c["oden"] = v[SYSCFG + 0x2C] & 1
        return c

    def check_live(self, what):
        """At every write that changes the clock tree, VCORE or the wait states, the running
        configuration must be within limits *at that moment* (order of the steps)."""
        c = self.clocks()
        if not c.get("sys_ck"):
            return
        vos = c["vos"]
        cpu_max, hclk_max, _ = VOS_LIMITS[vos]
        mhz = 1e6
        if c["cpu"] > cpu_max * mhz or c["hclk"] > hclk_max * mhz:
            self.violation(f"after writing {what}: CPU {c['cpu'] / mhz:g} MHz / AXI {c['hclk'] / mhz:g} MHz "
                           f"exceed VOS{vos}'s {cpu_max}/{hclk_max} MHz")
        need = flash_need(vos, c["hclk"])
        if need is None or c["latency"] < need[0]:
            self.violation(f"after writing {what}: FLASH_ACR.LATENCY {c['latency']} with AXI at "
                           f"{c['hclk'] / mhz:g} MHz in VOS{vos} (RM0433 Table 17 needs "
                           f"{'-' if need is None else need[0]})")


def flash_need(vos, hclk_hz):
    """(LATENCY, WRHIGHFREQ) from RM0433 Table 17 for the AXI clock, None if out of range."""
    mhz = hclk_hz / 1e6
    for top, lat, wr in FLASH_TABLE[vos]:
        if mhz <= top:
            return (lat, wr)
    return None


# ---------------------------------------------------------------------------------------------
# The emulator.
# ---------------------------------------------------------------------------------------------

SEMIHOSTING_BKPT = 0xAB
SYS_EXIT = 0x18
ADP_STOPPED_APPLICATION_EXIT = 0x20026
RTT_BLOCK_IF_FULL = 2

EXCP_NAMES = {1: "UDF (undefined instruction: panic-probe's abort, or a real fault)",
              2: "SVC", 3: "prefetch abort", 4: "data abort", 5: "IRQ", 6: "FIQ",
              7: "BKPT", 8: "exception exit", 9: "kernel trap", 13: "stack protect",
              18: "NOCP (coprocessor/FPU disabled)", 19: "INVSTATE", 20: "lockup"}


HERE = os.path.dirname(os.path.abspath(__file__))


class CRegion(ctypes.Structure):
    _fields_ = [("base", ctypes.c_uint64), ("size", ctypes.c_uint64), ("host", ctypes.c_void_p)]


class CCounter(ctypes.Structure):
    """struct h7_counter in h7count.c."""
    _fields_ = [("insns", ctypes.c_uint64), ("blocks", ctypes.c_uint64),
                ("slice", ctypes.c_uint64), ("next_stop", ctypes.c_uint64),
                ("emu_stop", ctypes.c_void_p), ("stopped", ctypes.c_uint32),
                ("nregions", ctypes.c_uint32), ("regions", CRegion * 16)]


_CLIB = None


def load_counter():
    """Compile h7count.c with the system C compiler (once per process) and load it; None when
    there is no compiler (the Python block hook is used instead)."""
    global _CLIB
    if _CLIB is not None:
        return _CLIB or None
    _CLIB = False
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc or os.environ.get("H7SIM_PYTHON_COUNTER"):
        return None
    out = os.path.join(tempfile.mkdtemp(prefix="h7sim-"), "h7count.so")
    r = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", out, os.path.join(HERE, "h7count.c")],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(f"h7sim: note: {cc} could not build h7count.c ({r.stderr.strip()[:300]}); "
                         "counting instructions in Python (slow)\n")
        return None
    _CLIB = ctypes.CDLL(out)
    return _CLIB


# Blocks between two stops of the emulation (RTT drain, limits): ~0.4 M instructions.
SLICE_BLOCKS = 1 << 16


class Sim:
    def __init__(self, elf: Elf, rev="V", debugger=True, max_instructions=0, timeout=0.0,
                 quiet=False):
        self.elf = elf
        self.regs = Regs(rev, debugger, self)
        self.py_icount = 0
        self.py_blocks = 0
        self.py_next_stop = SLICE_BLOCKS
        self.max_instructions = max_instructions
        self.deadline = time.monotonic() + timeout if timeout else 0
        self.quiet = quiet
        self.outcome = None       # ("exit", code) | ("wfi", primask) | ("error", msg) | ("limit", msg)
        self.rtt_bytes = bytearray()
        self.rtt_sinks = []
        self.bcount: dict[int, int] = {}
        self.last_pc = 0

        uc = self.uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB | UC_MODE_MCLASS)
        uc.ctl_set_cpu_model(A.UC_CPU_ARM_CORTEX_M7)
        # The memories are host buffers (mmap: page-aligned) so the C counter can read the code.
        self.host = []
        for _name, base, size, _what in MEMORY:
            buf = mmap.mmap(-1, size)
            ptr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
            self.host.append((base, size, buf, ptr))
            uc.mem_map_ptr(base, size, UC_PROT_ALL, ptr)
        for _name, lo, hi in PERIPHERAL_BUSES:
            lo &= ~0xFFF
            hi = (hi + 0xFFF) & ~0xFFF
            uc.mmio_map(lo, hi - lo, self._mmio_read, lo, self._mmio_write, lo)
        for paddr, data, _memsz, _flags in elf.segments:
            if not any(b <= paddr and paddr + len(data) <= b + s for _n, b, s, _w in MEMORY):
                raise ValueError(f"ELF segment at {paddr:#x} (+{len(data)}) is outside the "
                                 "STM32H743's memories")
            uc.mem_write(paddr, data)

        # Boot as the core does: SP and the reset vector from the vector table at 0x0800_0000
        # (SYSCFG_UR2.BOOT_ADD0 = 0x0800 at the factory; BOOT0 low).
        sp, reset = struct.unpack("<II", uc.mem_read(0x0800_0000, 8))
        self.initial_sp, self.reset = sp, reset
        if not reset & 1:
            raise ValueError(f"reset vector {reset:#x} is not a Thumb address")
        uc.reg_write(A.UC_ARM_REG_MSP, sp)
        uc.reg_write(A.UC_ARM_REG_SP, sp)
        self.hardfault = struct.unpack("<I", uc.mem_read(0x0800_000C, 4))[0] & ~1

        # RTT control block (defmt-rtt): set up-channel 0 to blocking, as `probe-rs run` does.
        self.rtt = elf.sym("_SEGGER_RTT")
        self.rtt_up = None

        lib = load_counter()
        self.counter = None
        if lib is not None:
            c = self.counter = CCounter()
            c.slice = c.next_stop = SLICE_BLOCKS
            c.emu_stop = ctypes.cast(uclib.uc_emu_stop, ctypes.c_void_p).value
            c.nregions = len(self.host)
            for i, (base, size, _buf, ptr) in enumerate(self.host):
                c.regions[i] = CRegion(base, size, ptr)
            handle = ctypes.c_size_t()
            err = uclib.uc_hook_add(uc._uch, ctypes.byref(handle), UC_HOOK_BLOCK,
                                    ctypes.cast(lib.h7_block, ctypes.c_void_p),
                                    ctypes.c_void_p(ctypes.addressof(c)),
                                    ctypes.c_uint64(1), ctypes.c_uint64(0))
            if err:
                raise UcError(err)
        else:
            uc.hook_add(UC_HOOK_BLOCK, self._on_block)
        self.py_stopped = False
        uc.hook_add(UC_HOOK_INTR, self._on_intr)
        uc.hook_add(UC_HOOK_MEM_INVALID, self._on_invalid)
        # HardFault entry (should Unicorn ever take an exception through the vector table).
        uc.hook_add(UC_HOOK_CODE, self._on_hardfault, begin=self.hardfault, end=self.hardfault)
        # WFI: found by scanning the code; each is hooked.
        self.wfi_addrs = []
        for addr, code in elf.code:
            for k in range(0, len(code) - 1, 2):
                if code[k] == 0x30 and code[k + 1] == 0xBF:
                    self.wfi_addrs.append(addr + k)
        for a in self.wfi_addrs:
            uc.hook_add(UC_HOOK_CODE, self._on_wfi, begin=a, end=a)

    # -- helpers ---------------------------------------------------------------------------
    @property
    def icount(self):
        """Instructions in the basic blocks entered so far (CYCCNT's source)."""
        return self.counter.insns if self.counter is not None else self.py_icount

    @property
    def blocks(self):
        return self.counter.blocks if self.counter is not None else self.py_blocks

    def pc(self):
        try:
            return self.uc.reg_read(A.UC_ARM_REG_PC)
        except UcError:
            return 0

    def stop(self, outcome):
        if self.outcome is None:
            self.outcome = outcome
        self.uc.emu_stop()

    # -- hooks -----------------------------------------------------------------------------
    def _mmio_read(self, uc, offset, size, base):
        return self.regs.read(base + offset, size)

    def _mmio_write(self, uc, offset, size, value, base):
        self.regs.write(base + offset, size, value)

    def _block_insns(self, addr, size):
        code = self.uc.mem_read(addr, size)
        n = k = 0
        while k + 1 < size:
            n += 1
            k += 4 if (code[k + 1] >> 3) in (0x1D, 0x1E, 0x1F) else 2
        return n

    def _on_block(self, uc, addr, size, _user):
        key = (addr << 12) | size
        n = self.bcount.get(key)
        if n is None:
            n = self.bcount[key] = self._block_insns(addr, size) if size < 4096 else size // 3
        if self.py_blocks + 1 >= self.py_next_stop:
            # Unicorn leaves this block unexecuted; it is entered (and counted) on resuming.
            self.py_next_stop = self.py_blocks + 1 + SLICE_BLOCKS
            self.py_stopped = True
            uc.emu_stop()
            return
        self.py_icount += n
        self.py_blocks += 1

    def _periodic(self):
        self.drain_rtt()
        if self.max_instructions and self.icount > self.max_instructions:
            self.stop(("limit", f"more than {self.max_instructions} instructions"))
        elif self.deadline and time.monotonic() > self.deadline:
            self.stop(("limit", "wall-clock timeout"))

    def _on_intr(self, uc, intno, _user):
        pc = self.pc()
        if intno == 7:  # BKPT
            try:
                insn = struct.unpack("<H", uc.mem_read(pc, 2))[0]
            except UcError:
                insn = 0
            imm = insn & 0xFF if insn & 0xFF00 == 0xBE00 else None
            if imm == SEMIHOSTING_BKPT:
                op = uc.reg_read(A.UC_ARM_REG_R0)
                arg = uc.reg_read(A.UC_ARM_REG_R1)
                if op == SYS_EXIT:
                    self.stop(("exit", 0 if arg == ADP_STOPPED_APPLICATION_EXIT else 1, arg))
                    return
                self.stop(("error", f"semihosting operation {op:#x} at pc={pc:#010x} is not "
                                    "supported (only SYS_EXIT)"))
                return
            self.stop(("error", f"BKPT {imm if imm is None else hex(imm)} at pc={pc:#010x}"))
            return
        what = EXCP_NAMES.get(intno, f"exception {intno}")
        self.stop(("error", f"{what} at pc={pc:#010x} (on the chip: HardFault)"))

    def _on_invalid(self, uc, access, address, size, value, _user):
        kind = {UC_MEM_READ_UNMAPPED: "read of unmapped", UC_MEM_WRITE_UNMAPPED: "write to unmapped",
                UC_MEM_FETCH_UNMAPPED: "instruction fetch from unmapped",
                UC_MEM_READ_PROT: "read of protected", UC_MEM_WRITE_PROT: "write to protected",
                UC_MEM_FETCH_PROT: "fetch from protected"}.get(access, f"access {access} to")
        hint = ""
        if 0x1FF0_0000 <= address < 0x2000_0000:
            hint = " (just below DTCM: with flip-link, a stack overflow)"
        self.stop(("error", f"{kind} address {address:#010x} ({size} bytes) at "
                            f"pc={self.pc():#010x}{hint} (on the chip: a bus fault → HardFault)"))
        return False

    def _on_hardfault(self, uc, addr, size, _user):
        self.stop(("error", f"HardFault handler entered (pc={addr:#010x})"))

    def _on_wfi(self, uc, addr, size, _user):
        primask = uc.reg_read(A.UC_ARM_REG_PRIMASK) & 1
        self.stop(("wfi", primask, addr))

    # -- RTT -------------------------------------------------------------------------------
    def rtt_setup(self):
        """Find up-channel 0 once the firmware's .data is in place (the control block's ID)."""
        if self.rtt is None or self.rtt_up is not None:
            return self.rtt_up is not None
        head = bytes(self.uc.mem_read(self.rtt, 24))
        if not head.startswith(b"SEGGER RTT"):
            return False
        max_up = struct.unpack_from("<i", head, 16)[0]
        if max_up < 1:
            return False
        ch = self.rtt + 24   # up buffer 0: name, buffer, size, WrOff, RdOff, flags
        self.rtt_up = ch
        flags = struct.unpack("<I", self.uc.mem_read(ch + 20, 4))[0]
        self.uc.mem_write(ch + 20, struct.pack("<I", (flags & ~3) | RTT_BLOCK_IF_FULL))
        return True

    def drain_rtt(self):
        if not self.rtt_setup():
            return
        ch = self.rtt_up
        buf, size, wr, rd = struct.unpack("<IIII", self.uc.mem_read(ch + 4, 16))
        if wr == rd or size == 0 or wr >= size or rd >= size:
            return
        if wr > rd:
            data = bytes(self.uc.mem_read(buf + rd, wr - rd))
        else:
            data = bytes(self.uc.mem_read(buf + rd, size - rd)) + bytes(self.uc.mem_read(buf, wr))
        self.uc.mem_write(ch + 16, struct.pack("<I", wr))
        self.rtt_bytes += data
        for sink in self.rtt_sinks:
            sink(data)

    # -- run -------------------------------------------------------------------------------
    def run(self):
        t0 = time.monotonic()
        pc = self.reset
        while True:
            if self.counter is not None:
                self.counter.stopped = 0
            self.py_stopped = False
            try:
                self.uc.emu_start(pc | 1, 0xFFFF_FFFF)
            except UcError as e:
                self._emu_error(e)
                break
            if self.outcome is not None:
                break
            if not (self.py_stopped or (self.counter is not None and self.counter.stopped)):
                break   # Unicorn ended the run by itself
            self._periodic()      # a slice ended: drain RTT, check the limits, resume
            if self.outcome is not None:
                break
            pc = self.pc()
        self.drain_rtt()
        if self.outcome is None:
            self.outcome = ("error", f"emulation ended without an exit at pc={self.pc():#010x}")
        self.seconds = time.monotonic() - t0
        return self.outcome

    def _emu_error(self, e):
        if self.outcome is None:
            pc = self.pc()
            if e.errno == UC_ERR_INSN_INVALID:
                try:
                    insn = struct.unpack("<H", self.uc.mem_read(pc, 2))[0]
                except UcError:
                    insn = 0
                what = (f"UDF #{insn & 0xFF} (panic-probe's abort after a panic)"
                        if insn & 0xFF00 == 0xDE00 else f"undefined instruction {insn:#06x}")
                self.outcome = ("error", f"{what} at pc={pc:#010x} (on the chip: HardFault)")
            else:
                self.outcome = ("error", f"emulation stopped: {e} at pc={pc:#010x}")


# ---------------------------------------------------------------------------------------------
# The report.
# ---------------------------------------------------------------------------------------------

def clock_report(regs: Regs, out):
    """Print the clock configuration and return the list of failed checks."""
    c = regs.clocks()
    rev = regs.rev
    M = 1e6
    fails = []
    checks = []

    def check(ok, what):
        checks.append((ok, what))
        if not ok:
            fails.append(what)

    def f(x):
        return "?" if x is None else f"{x / M:g} MHz"

    idc = regs.v[DBGMCU]
    p = lambda s: out.write(s + "\n")  # noqa: E731
    p("h7sim: clock configuration the firmware programmed (decoded from the register model)")
    p(f"  DBGMCU_IDC    {idc:#010x}: DEV_ID {idc & 0xFFF:#x}, REV_ID {idc >> 16:#06x} (revision {rev})")
    p(f"  PWR           CR3 {regs.v[PWR + 0xC]:#010x}, D3CR.VOS {c['d3cr_vos']:#04b}, "
      f"SYSCFG_PWRCR.ODEN {c['oden']} -> VOS{c['vos']}"
      + (" (VOS1 + overdrive)" if c['vos'] == 0 else ""))
    p(f"  RCC_PLLCKSELR {regs.v[RCC + 0x28]:#010x}: PLLSRC {c['pllsrc']}"
      + (f" ({f(c['hsi'])}, HSIDIV /{c['hsidiv']})" if c['pllsrc'] == 'HSI' else "")
      + f", DIVM1 {c['divm1']} -> ref1_ck {f(c['ref1'])}")
    p(f"  RCC_PLLCFGR   {regs.v[RCC + 0x2C]:#010x}: PLL1RGE {c['pll1rge']}, PLL1VCOSEL "
      f"{'medium (VCOL)' if c['pll1vcosel'] else 'wide (VCOH)'}, PLL1FRACEN {c['pll1fracen']}, "
      f"DIVP1EN {c['divp1en']} DIVQ1EN {c['divq1en']} DIVR1EN {c['divr1en']}")
    p(f"  RCC_PLL1DIVR  {regs.v[RCC + 0x30]:#010x}: N {c['divn1']}"
      + (f" + {c['fracn1']}/8192" if c['fracn1'] else "")
      + f" -> VCO {f(c['vco1'])}; P /{c['divp1']} -> pll1_p_ck {f(c['pll1_p'])}; "
      f"Q /{c['divq1']} -> {f(c['pll1_q'])}; R /{c['divr1']} -> {f(c['pll1_r'])}")
    p(f"  RCC_CR        {regs.read32(RCC):#010x}: PLL1ON {c['pll1on']}")
    p(f"  RCC_CFGR      {regs.read32(RCC + 0x10):#010x}: SW {c['sw']}, SWS {c['sws']} ({c['sys_src']}) "
      f"-> sys_ck {f(c['sys_ck'])}")
    if c.get("sys_ck"):
        p(f"  RCC_D1CFGR    {regs.v[RCC + 0x18]:#010x}: D1CPRE /{c['d1cpre']} -> CPU {f(c['cpu'])}; "
          f"HPRE /{c['hpre']} -> AXI/AHB hclk {f(c['hclk'])}; D1PPRE /{c['d1ppre']} -> APB3 {f(c['apb3'])}")
        p(f"  RCC_D2CFGR    {regs.v[RCC + 0x1C]:#010x}: D2PPRE1 /{c['d2ppre1']} -> APB1 {f(c['apb1'])}; "
          f"D2PPRE2 /{c['d2ppre2']} -> APB2 {f(c['apb2'])}")
        p(f"  RCC_D3CFGR    {regs.v[RCC + 0x20]:#010x}: D3PPRE /{c['d3ppre']} -> APB4 {f(c['apb4'])}")
    need = flash_need(c["vos"], c["hclk"]) if c.get("sys_ck") else None
    p(f"  FLASH_ACR     {regs.v[FLASH_R]:#010x}: LATENCY {c['latency']} WS, WRHIGHFREQ {c['wrhighfreq']}"
      + (f" (RM0433 Table 17 at VOS{c['vos']}, {f(c['hclk'])}: {need[0]} WS, WRHIGHFREQ {need[1]})"
         if need else ""))
    ccr = regs.v[SCB + 0x14]
    ic, dc = ccr >> 17 & 1, ccr >> 16 & 1
    ops = ", ".join(f"{k} x{v}" for k, v in sorted(regs.cache_ops.items())) or "none"
    p(f"  SCB_CCR       {ccr:#010x}: IC {ic}, DC {dc}; cache maintenance: {ops}")
    demcr, dwtc, lsr = regs.v[DCB + 0xC], regs.v[DWT], regs.v[DWT + 0xFB4]
    p(f"  DWT           CTRL {dwtc:#010x} (CYCCNTENA {dwtc & 1}), DEMCR.TRCENA {demcr >> 24 & 1}, "
      f"LSR {lsr:#x} ({'unlocked' if not lsr & 2 else 'locked'}); CYCCNT {regs.cyccnt()} "
      "(instructions executed since the firmware zeroed it — not cycles)")
    if regs.events:
        p("  sequence:     " + "; ".join(regs.events))

    # The assertions.
    want_mhz, want_vos = (480, 0) if rev == "V" else (400, 1)
    check(c["sws"] == 3 and c["sw"] == 3, "system clock switched to PLL1 (CFGR.SW = SWS = 3)")
    check(c["pllsrc"] == "HSI" and c["hsidiv"] == 1, "PLL source HSI 64 MHz (HSIDIV /1)")
    check(c.get("sys_ck") is not None and abs(c["sys_ck"] - want_mhz * M) < 1,
          f"sys_ck = {want_mhz} MHz on revision {rev} (got {f(c.get('sys_ck'))})")
    check(c.get("cpu") is not None and abs(c["cpu"] - want_mhz * M) < 1,
          f"CPU clock (sys_d1cpre_ck) = {want_mhz} MHz (got {f(c.get('cpu'))})")
    if want_vos == 0:
        check(c["d3cr_vos"] == 0b11 and c["oden"] == 1 and c["vos"] == 0,
              "VOS0: D3CR.VOS = VOS1 (0b11) and SYSCFG_PWRCR.ODEN = 1")
    else:
        check(c["d3cr_vos"] == 0b11 and c["oden"] == 0 and c["vos"] == 1,
              "VOS1: D3CR.VOS = 0b11, ODEN = 0 (revision Y has no overdrive)")
    ref_lo, ref_hi = PLLRGE[c["pll1rge"]]
    check(c["ref1"] is not None and ref_lo <= c["ref1"] <= ref_hi,
          f"PLL1 reference {f(c['ref1'])} within PLL1RGE {c['pll1rge']}'s {ref_lo / M:g}–{ref_hi / M:g} MHz")
    lo, hi = VCO_MEDIUM if c["pll1vcosel"] else VCO_WIDE[rev]
    check(c["vco1"] is not None and lo <= c["vco1"] <= hi,
          f"PLL1 VCO {f(c['vco1'])} within {lo / M:g}–{hi / M:g} MHz "
          f"({'medium' if c['pll1vcosel'] else 'wide'} range, revision {rev})")
    if c.get("sys_ck"):
        cpu_max, hclk_max, apb_max = VOS_LIMITS[c["vos"]]
        check(c["hclk"] <= hclk_max * M, f"AXI/AHB clock {f(c['hclk'])} <= {hclk_max} MHz at VOS{c['vos']}")
        for k in ("apb1", "apb2", "apb3", "apb4"):
            check(c[k] <= apb_max * M, f"{k.upper()} {f(c[k])} <= {apb_max} MHz at VOS{c['vos']}")
        check(need is not None and c["latency"] >= need[0],
              f"FLASH_ACR.LATENCY {c['latency']} >= RM0433 Table 17's "
              f"{'(out of table)' if need is None else need[0]} WS for {f(c['hclk'])} at VOS{c['vos']}")
        check(need is not None and c["wrhighfreq"] == need[1],
              f"FLASH_ACR.WRHIGHFREQ {c['wrhighfreq']} = Table 17's "
              f"{'(out of table)' if need is None else need[1]}")
    check(ic == 1, "I-cache enabled (CCR.IC)")
    check(dc == 1, "D-cache enabled (CCR.DC)")
    check(regs.cache_ops.get("ICIALLU", 0) >= 1, "I-cache invalidated before enabling (ICIALLU)")
    check(regs.cache_ops.get("DCISW", 0) >= 128 * 4,
          "D-cache invalidated by set/way before enabling (DCISW over 128 sets x 4 ways)")
    cpacr = regs.v[SCB + 0x88]
    # The firmware's CPACR write lands in the register model, so Unicorn runs FP instructions
    # either way; on the chip they fault (NOCP) unless the runtime (cortex-m-rt on a hard-float
    # target) gave CP10/CP11 full access first.
    check(cpacr >> 20 & 0xF == 0xF, f"FPU enabled (CPACR {cpacr:#010x}: CP10/CP11 full access)")
    check(dwtc & 1 and demcr >> 24 & 1, "DWT cycle counter enabled (DEMCR.TRCENA, DWT_CTRL.CYCCNTENA)")
    check(regs.dwt_ignored == 0, "no DWT write ignored by the M7's DWT lock")
    for v in regs.violations:
        check(False, "sequence: " + v)
    for ok, what in checks:
        p(f"  [{'ok' if ok else 'FAIL'}] {what}")
    return fails


# ---------------------------------------------------------------------------------------------
# defmt decoding.
# ---------------------------------------------------------------------------------------------

class Defmt:
    """Pipes the raw RTT stream through `defmt-print -e ELF`; decoded lines go to stderr and
    are kept for the verdict checks."""

    def __init__(self, elf_path, echo=True):
        self.lines: list[str] = []
        self.proc = None
        exe = shutil.which("defmt-print")
        if not exe:
            return
        self.proc = subprocess.Popen([exe, "-e", elf_path, "--log-format", "{L} {s}"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self.echo = echo
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            if self.echo:
                sys.stderr.write(line + "\n")
                sys.stderr.flush()

    def feed(self, data):
        if self.proc:
            try:
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
            except BrokenPipeError:
                pass

    def close(self):
        if self.proc:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
            self.proc.wait(timeout=60)
            self.thread.join(timeout=60)


VERDICT = re.compile(r"(PASS|FAIL): .*")


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Run the STM32H743 firmware ELF on an emulated Cortex-M7 with an STM32H743 "
                    "register model; check the clock set-up; exit with the firmware's verdict.")
    ap.add_argument("elf", help="the firmware ELF (cargo build --release --features stm32h743)")
    ap.add_argument("--rev", choices=["V", "Y"], default="V",
                    help="silicon revision DBGMCU_IDC reports (V: 480 MHz at VOS0; Y: 400 MHz at VOS1)")
    ap.add_argument("--no-debugger", action="store_true",
                    help="DHCSR.C_DEBUGEN = 0: the firmware must log its verdict and sleep in wfi")
    ap.add_argument("--rtt-out", metavar="FILE", help="also write the raw RTT (defmt) bytes to FILE")
    ap.add_argument("--no-decode", action="store_true", help="do not run defmt-print")
    ap.add_argument("--max-instructions", type=int, default=4_000_000_000,
                    help="stop (exit 124) after this many instructions (default 4e9)")
    ap.add_argument("--timeout", type=float, default=1800, help="wall-clock seconds (default 1800)")
    args = ap.parse_args(argv)

    try:
        elf = Elf(args.elf)
        sim = Sim(elf, rev=args.rev, debugger=not args.no_debugger,
                  max_instructions=args.max_instructions, timeout=args.timeout)
    except (OSError, ValueError) as e:
        sys.stderr.write(f"h7sim: error: {e}\n")
        return 2
    tag = re.search(rb"board=[a-z0-9-]+ probe-rs-chip=[A-Za-z0-9+-]+;", elf.raw)
    if not tag or not tag.group(0).startswith(b"board=stm32h743 "):
        sys.stderr.write(f"h7sim: error: {args.elf} is not an STM32H743 build "
                         f"(tag: {tag.group(0).decode() if tag else 'none'})\n")
        return 2
    print(f"h7sim: {args.elf}: reset vector {sim.reset:#010x}, initial SP {sim.initial_sp:#010x}, "
          f"revision {args.rev}, debugger {'attached' if not args.no_debugger else 'not attached'}; "
          f"RTT control block {'at %#010x' % sim.rtt if sim.rtt is not None else 'not found'}",
          flush=True)
    raw_out = open(args.rtt_out, "wb") if args.rtt_out else None
    decoder = Defmt(args.elf) if not args.no_decode else Defmt.__new__(Defmt)
    if args.no_decode:
        decoder.lines, decoder.proc = [], None
    elif decoder.proc is None:
        sys.stderr.write("h7sim: note: defmt-print not on PATH: the log is not decoded "
                         "(use --rtt-out FILE and `defmt-print -e ELF < FILE`)\n")
    if raw_out:
        sim.rtt_sinks.append(raw_out.write)
    sim.rtt_sinks.append(decoder.feed)

    outcome = sim.run()
    decoder.close()
    if raw_out:
        raw_out.close()
    sys.stdout.flush()

    secs = sim.seconds
    mips = sim.icount / secs / 1e6 if secs else 0
    print(f"h7sim: {sim.icount} instructions in {sim.blocks} blocks, {secs:.1f} s "
          f"({mips:.1f} M instructions/s); {len(sim.rtt_bytes)} bytes of RTT")
    fails = clock_report(sim.regs, sys.stdout)

    # defmt-rtt frames are rzCOBS-encoded: the verdict is read from the decoded log.
    verdicts = [m.group(0) for ln in decoder.lines for m in [VERDICT.search(ln)] if m]
    verdict = verdicts[-1] if verdicts else None
    if verdict:
        print(f"h7sim: firmware verdict: {verdict}")
        if "cycles" in verdict:
            print("h7sim: note: the firmware's \"cycles\" are DWT CYCCNT, which counts executed "
                  "instructions here (per basic block), not cycles; the ms figures assume 1 "
                  "instruction per cycle")
    elif decoder.proc is None:
        print("h7sim: note: no decoded log (defmt-print missing or --no-decode): verdict line not checked")
    unmodelled = sorted({a for kind, a in sim.regs.warned})
    print("h7sim: unmodelled registers accessed: "
          + (", ".join(f"{a:#010x}" for a in unmodelled) if unmodelled else "none"))
    code = 1
    kind = outcome[0]
    if kind == "exit":
        code = outcome[1]
        print(f"h7sim: semihosting SYS_EXIT, reason {outcome[2]:#x} -> exit {code}")
        if args.no_debugger:
            print("h7sim: error: the firmware made a semihosting call although DHCSR.C_DEBUGEN = 0 "
                  "(on a board without a debugger this would lock the core up)")
            code = 1
    elif kind == "wfi":
        _, primask, addr = outcome
        asleep = (f"the core sleeps in wfi at {addr:#010x} with interrupts "
                  f"{'masked (PRIMASK = 1): nothing will wake it' if primask else 'enabled, but no interrupt source is modelled'}")
        if not args.no_debugger:
            print(f"h7sim: error: {asleep}, although a debugger is attached (expected a semihosting exit)")
            code = 1
        elif decoder.proc is None:
            print(f"h7sim: error: {asleep}; without defmt-print the verdict in the log cannot be read")
            code = 1
        elif not any("no debugger attached" in ln for ln in decoder.lines):
            print(f"h7sim: error: {asleep}, but the log lacks \"no debugger attached\"")
            code = 1
        elif not primask:
            print(f"h7sim: error: {asleep}: the firmware's sleep masks interrupts first")
            code = 1
        elif verdict and verdict.startswith("PASS"):
            print(f"h7sim: note: {asleep}. No debugger attached, so the verdict stays in the RTT "
                  "log: the log's PASS line is the result (exit 0)")
            code = 0
        else:
            print(f"h7sim: error: {asleep}; the log's verdict is {verdict or 'missing'}")
            code = 1
    elif kind == "limit":
        print(f"h7sim: error: stopped: {outcome[1]} (pc={sim.pc():#010x})")
        code = 124
    else:
        print(f"h7sim: error: {outcome[1]}")
        code = 1
    if fails:
        print(f"h7sim: error: {len(fails)} clock/cache/counter check(s) failed: " + "; ".join(fails))
        if code == 0:
            code = 1
    print(f"h7sim: exit {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
