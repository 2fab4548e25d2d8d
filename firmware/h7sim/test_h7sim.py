"""Tests of h7sim's register model, semihosting exits and clock checks on tiny hand-assembled
Thumb ELFs (no toolchain needed: the 16-bit Thumb encodings are written out below, checked
against `llvm-mc -triple=thumbv7em -show-encoding`).

    python -m unittest -v firmware/h7sim/test_h7sim.py      (or: pytest firmware/h7sim)

With H7SIM_ELF=<the real firmware ELF> set, one more test runs it (slow: minutes).
"""
import io
import os
import struct
import subprocess
import sys
import tempfile
import unittest
from contextlib import redirect_stdout, redirect_stderr

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import h7sim  # noqa: E402

TAG = b"board=stm32h743 probe-rs-chip=STM32H743ZITx;"
RCC, PWR, SYSCFG, FLASH = h7sim.RCC, h7sim.PWR, h7sim.SYSCFG, h7sim.FLASH_R
DWT, DCB, SCB = h7sim.DWT, h7sim.DCB, h7sim.SCB


class Asm:
    """A two-pass assembler for the few 16-bit Thumb instructions the tests use."""

    def __init__(self, base):
        self.base = base
        self.items = []   # (kind, args)

    def label(self, name):
        self.items.append(("label", name))

    def h(self, *halfwords):
        for x in halfwords:
            self.items.append(("h", x))

    def b(self, cond, name):       # B<cond> (T1, cond 0..13) or B (T2, cond None)
        self.items.append(("b", (cond, name)))

    def ldr_lit(self, rt, value):  # LDR rt, =value (literal pool at the end)
        self.items.append(("lit", (rt, value)))

    def assemble(self):
        lits = [args for kind, args in self.items if kind == "lit"]
        size = sum(2 for kind, _ in self.items if kind != "label")
        pool = (self.base + size + 3) & ~3
        labels, pc = {}, self.base
        for kind, args in self.items:
            if kind == "label":
                labels[args] = pc
            else:
                pc += 2
        out, pc, nlit = bytearray(), self.base, 0
        for kind, args in self.items:
            if kind == "label":
                continue
            if kind == "h":
                word = args
            elif kind == "b":
                cond, name = args
                off = labels[name] - (pc + 4)
                assert off % 2 == 0
                if cond is None:
                    assert -2048 <= off // 2 < 1024
                    word = 0xE000 | ((off // 2) & 0x7FF)
                else:
                    assert -128 <= off // 2 < 128
                    word = 0xD000 | (cond << 8) | ((off // 2) & 0xFF)
            else:
                rt, _v = args
                target = pool + 4 * nlit
                nlit += 1
                off = target - ((pc + 4) & ~3)
                assert 0 <= off < 1024 and off % 4 == 0
                word = 0x4800 | (rt << 8) | (off // 4)
            out += struct.pack("<H", word)
            pc += 2
        while (self.base + len(out)) % 4:
            out += b"\x00"
        for _rt, v in lits:
            out += struct.pack("<I", v & 0xFFFF_FFFF)
        return bytes(out)


EQ, NE = 0, 1
NOP, CPSID_I, WFI = 0xBF00, 0xB672, 0xBF30


def program(table, tail="exit_ok", with_tag=True):
    """An image: vector table, then code that walks `table` — (addr, value, mask) entries: mask 0
    writes value, else polls until (read & mask) == value (spins forever if the model never sets
    the bit) — then does `tail`."""
    code_at = 0x0800_0040
    tbl = b"".join(struct.pack("<III", a, v, m) for a, v, m in table) + struct.pack("<III", 0, 0, 0)
    tbl_at = 0x0800_2000
    s = Asm(code_at)
    s.ldr_lit(4, tbl_at)
    s.label("loop")
    s.h(0xCC07)              # ldmia r4!, {r0, r1, r2}
    s.h(0x2800)              # cmp r0, #0
    s.b(EQ, "done")
    s.h(0x2A00)              # cmp r2, #0
    s.b(NE, "poll")
    s.h(0x6001)              # str r1, [r0]
    s.b(None, "loop")
    s.label("poll")
    s.h(0x6803)              # ldr r3, [r0]
    s.h(0x4013)              # ands r3, r2
    s.h(0x428B)              # cmp r3, r1
    s.b(NE, "poll")
    s.b(None, "loop")
    s.label("done")
    if tail in ("exit_ok", "exit_fail"):
        s.h(0x2018)          # movs r0, #0x18 (SYS_EXIT)
        s.ldr_lit(1, 0x20026 if tail == "exit_ok" else 0x20023)
        s.h(0xBEAB)          # bkpt 0xab
    elif tail == "cyccnt":   # CYCCNT before and after a 100-iteration loop -> [0x2000_0000]
        s.ldr_lit(0, DWT + 4)
        s.h(0x6801)          # ldr r1, [r0]
        s.h(0x2564)          # movs r5, #100
        s.label("spin")
        s.h(0x3D01)          # subs r5, #1
        s.b(NE, "spin")
        s.h(0x6802)          # ldr r2, [r0]
        s.h(0x1A52)          # subs r2, r2, r1
        s.ldr_lit(3, 0x2000_0000)
        s.h(0x601A)          # str r2, [r3]
        s.h(0x2018)
        s.ldr_lit(1, 0x20026)
        s.h(0xBEAB)
    elif tail == "udf":
        s.h(0xDE00)          # udf #0
    elif tail == "bkpt":
        s.h(0xBE01)          # bkpt 0x01
    elif tail == "wfi":
        s.h(CPSID_I)
        s.label("sleep")
        s.h(WFI)
        s.b(None, "sleep")
    elif tail == "bad_read":
        s.ldr_lit(0, 0x6000_0000)   # FMC bank 1: nothing mapped (no FMC set-up)
        s.h(0x6803)          # ldr r3, [r0]
    elif tail == "stack_overflow":
        s.ldr_lit(0, 0x1FFF_FFFC)   # just below DTCM, where a flip-link stack overflows to
        s.h(0x6001)          # str r1, [r0]
    elif tail == "unmodelled":
        s.ldr_lit(0, 0x5802_0000)   # GPIOA_MODER: mapped peripheral, not modelled
        s.h(0x6803)          # ldr r3, [r0]
        s.h(0x2018)
        s.ldr_lit(1, 0x20026)
        s.h(0xBEAB)
    code = s.assemble()
    image = bytearray(0x2000 + len(tbl) + len(TAG) + 8)
    struct.pack_into("<II", image, 0, 0x2000_4000, code_at | 1)
    for v in range(2, 16):
        struct.pack_into("<I", image, 4 * v, (code_at + len(code)) | 1)  # never taken
    image[0x40:0x40 + len(code)] = code
    image[0x2000:0x2000 + len(tbl)] = tbl
    if with_tag:
        image[0x2000 + len(tbl):0x2000 + len(tbl) + len(TAG)] = TAG
    return bytes(image)


def write_elf(path, image, base=0x0800_0000):
    """An ELF32 ARM executable with one PT_LOAD segment, one .text section and no symbols."""
    ehsize, phsize, shsize = 52, 32, 40
    data_off = 0x100
    shstr = b"\0.text\0.shstrtab\0"
    shstr_off = data_off + len(image)
    sh_off = (shstr_off + len(shstr) + 3) & ~3
    eh = b"\x7fELF\x01\x01\x01" + bytes(9) + struct.pack(
        "<HHIIIIIHHHHHH", 2, 40, 1, base | 0x41, ehsize, sh_off, 0x0500_0400, ehsize, phsize, 1,
        shsize, 3, 2)
    ph = struct.pack("<IIIIIIII", 1, data_off, base, base, len(image), len(image), 5, 0x1000)
    sh = bytes(shsize)
    sh += struct.pack("<IIIIIIIIII", 1, 1, 0x6, base, data_off, len(image), 0, 0, 4, 0)
    sh += struct.pack("<IIIIIIIIII", 7, 3, 0, 0, shstr_off, len(shstr), 0, 0, 1, 0)
    out = bytearray(eh + ph)
    out += bytes(data_off - len(out)) + image + shstr
    out += bytes(sh_off - len(out)) + sh
    with open(path, "wb") as f:
        f.write(out)


# The clock set-up the HAL performs for 480 MHz on revision V (as the real firmware's run shows),
# as writes and polls, in the HAL's order.
def clocks_480(latency=4, oden=True):
    t = [
        (PWR + 0x0C, 0x0000_0006, 0),                 # CR3: SCUEN | LDOEN
        (PWR + 0x04, 1 << 13, 1 << 13),               # poll CSR1.ACTVOSRDY
        (PWR + 0x18, 0x0000_C000, 0),                 # D3CR.VOS = VOS1
        (PWR + 0x18, 1 << 13, 1 << 13),               # poll VOSRDY
        (RCC + 0xF4, 0x0001_0002, 0),                 # APB4ENR.SYSCFGEN
    ]
    if oden:
        t += [(SYSCFG + 0x2C, 1, 0), (PWR + 0x18, 1 << 13, 1 << 13)]
    t += [
        (FLASH, 0x20 | latency, 0),                   # WRHIGHFREQ 2
        (FLASH, latency, 0xF),                        # poll LATENCY read-back
        (RCC + 0x00, 0x0000_0085, 0),                 # CSION
        (RCC + 0x00, 1 << 8, 1 << 8),                 # poll CSIRDY
        (RCC + 0x28, 0x0202_0040, 0),                 # PLLSRC HSI, DIVM1 4 -> 16 MHz
        (RCC + 0x2C, 0x01FF_000C, 0),                 # PLL1RGE 3 (8-16 MHz), wide VCO, DIVP1EN
        (RCC + 0x30, 0x0101_023B, 0),                 # DIVN1 60 -> 960 MHz, DIVP1 2 -> 480
        (RCC + 0x00, 0x0100_0085, 0),                 # PLL1ON
        (RCC + 0x00, 1 << 25, 1 << 25),               # poll PLL1RDY
        (RCC + 0x18, 0x0000_0048, 0),                 # D1CPRE /1, D1PPRE /2, HPRE /2
        (RCC + 0x1C, 0x0000_0440, 0),                 # D2PPRE1/2 /2
        (RCC + 0x20, 0x0000_0040, 0),                 # D3PPRE /2
        (RCC + 0x10, 0x0000_0003, 0),                 # SW = PLL1
        (RCC + 0x10, 0x0000_0018, 0x38),              # poll SWS = PLL1
        (SYSCFG + 0x20, 1, 0),                        # CCCSR.EN
        (SYSCFG + 0x20, 1 << 8, 1 << 8),              # poll READY
    ]
    return t


def caches_and_dwt():
    t = [(0xE000_EF50, 0, 0), (SCB + 0x14, 0x0002_0200, 0), (SCB + 0x84, 0, 0)]
    t += [(0xE000_EF60, (w << 30) | (s << 5), 0) for s in range(128) for w in range(4)]
    t += [(SCB + 0x14, 0x0003_0200, 0),
          (DCB + 0xC, 1 << 24, 0), (DWT + 0xFB0, 0xC5AC_CE55, 0), (DWT + 4, 0, 0), (DWT, 0x4000_0001, 0),
          (SCB + 0x88, 0xF << 20, 0)]   # CPACR: FPU on, as cortex-m-rt does
    return t


class H7SimTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def elf(self, table, tail="exit_ok", **kw):
        path = os.path.join(self.tmp.name, f"t{len(os.listdir(self.tmp.name))}.elf")
        write_elf(path, program(table, tail, **kw))
        return path

    def sim(self, table, tail="exit_ok", rev="V", debugger=True, limit=200_000):
        s = h7sim.Sim(h7sim.Elf(self.elf(table, tail)), rev=rev, debugger=debugger,
                      max_instructions=limit)
        with redirect_stderr(io.StringIO()) as err:
            s.run()
        s.stderr = err.getvalue()
        return s

    def main(self, table, tail="exit_ok", *args):
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = h7sim.main([self.elf(table, tail), "--no-decode", "--max-instructions",
                               "500000", *args])
        return code, out.getvalue(), err.getvalue()

    # -- the register model ----------------------------------------------------------------
    def test_ready_bits_follow_enables(self):
        r = h7sim.Regs("V", True)
        self.assertEqual(r.read32(RCC) & 0x25, 0x25, "HSION, HSIRDY, HSIDIVF at reset")
        for on, rdy in ((7, 8), (12, 13), (16, 17), (24, 25), (26, 27), (28, 29)):
            self.assertFalse(r.read32(RCC) >> rdy & 1)
            r.write32(RCC, r.v[RCC] | 1 << on)
            self.assertTrue(r.read32(RCC) >> rdy & 1, f"bit {rdy} follows bit {on}")
            r.write32(RCC, r.v[RCC] & ~(1 << on))
            self.assertFalse(r.read32(RCC) >> rdy & 1)
        r.write32(RCC + 0x74, 1)
        self.assertEqual(r.read32(RCC + 0x74) & 3, 3, "LSIRDY follows LSION")
        r.write32(SYSCFG + 0x20, 1)
        self.assertTrue(r.read32(SYSCFG + 0x20) >> 8 & 1, "CCCSR.READY follows EN")

    def test_sws_mirrors_sw(self):
        r = h7sim.Regs("V", True)
        for sw in (0, 1, 2, 3):
            r.write32(RCC + 0x10, 0x8000 | sw)
            self.assertEqual(r.read32(RCC + 0x10), 0x8000 | sw | sw << 3)

    def test_pwr_status(self):
        r = h7sim.Regs("V", True)
        self.assertFalse(r.read32(PWR + 4) >> 13 & 1, "ACTVOSRDY waits for the supply configuration")
        r.write32(PWR + 0xC, 6)
        self.assertTrue(r.read32(PWR + 4) >> 13 & 1)
        r.write32(PWR + 0x18, 0xC000)
        self.assertEqual(r.read32(PWR + 0x18), 0xE000, "VOS1 with VOSRDY")
        self.assertEqual(r.read32(PWR + 4) >> 14 & 3, 3, "ACTVOS follows VOS")
        self.assertEqual(r.vos(), 1)
        r.write32(RCC + 0xF4, 2)
        r.write32(SYSCFG + 0x2C, 1)
        self.assertEqual(r.vos(), 0, "VOS1 + ODEN = VOS0")
        self.assertEqual(r.violations, [])

    def test_oden_before_vos1_is_a_violation(self):
        r = h7sim.Regs("V", True)
        r.write32(RCC + 0xF4, 2)
        with redirect_stderr(io.StringIO()):
            r.write32(SYSCFG + 0x2C, 1)
        self.assertTrue(any("VOS0 must be entered from VOS1" in v for v in r.violations))
        r = h7sim.Regs("Y", True)
        r.write32(PWR + 0x18, 0xC000)
        with redirect_stderr(io.StringIO()):
            r.write32(SYSCFG + 0x2C, 1)
        self.assertTrue(any("no VOS0" in v for v in r.violations))

    def test_idc_dhcsr_caches(self):
        self.assertEqual(h7sim.Regs("V", True).read32(h7sim.DBGMCU), 0x2003_0450)
        self.assertEqual(h7sim.Regs("Y", True).read32(h7sim.DBGMCU), 0x1003_0450)
        self.assertEqual(h7sim.Regs("V", True).read32(DCB) & 1, 1)
        self.assertEqual(h7sim.Regs("V", False).read32(DCB) & 1, 0)
        r = h7sim.Regs("V", True)
        r.write32(SCB + 0x84, 0)
        d = r.read32(SCB + 0x80)
        r.write32(SCB + 0x84, 1)
        i = r.read32(SCB + 0x80)
        # sets x ways x line bytes = 16 KB each
        for ccsidr in (d, i):
            sets, ways, line = (ccsidr >> 13 & 0x7FFF) + 1, (ccsidr >> 3 & 0x3FF) + 1, 16 << (ccsidr & 7)
            self.assertEqual(sets * ways * line, 16 << 10)
        self.assertEqual(r.read32(SCB), 0x411F_C271)

    def test_flash_table(self):
        self.assertEqual(h7sim.flash_need(0, 240e6), (4, 2))
        self.assertEqual(h7sim.flash_need(1, 200e6), (2, 2))
        self.assertEqual(h7sim.flash_need(1, 240e6), None)
        self.assertEqual(h7sim.flash_need(3, 64e6), (1, 1))

    def test_dwt_lock_and_count(self):
        r = h7sim.Regs("V", True)
        r.write32(DCB + 0xC, 1 << 24)
        with redirect_stderr(io.StringIO()):
            r.write32(DWT, 1)
        self.assertEqual(r.v[DWT] & 1, 0, "locked DWT ignores the write")
        r.write32(DWT + 0xFB0, 0xC5AC_CE55)
        r.write32(DWT, 1)
        self.assertEqual(r.read32(DWT) & 1, 1)

    # -- programs on the emulated core -----------------------------------------------------
    def test_polls_terminate_on_the_model(self):
        s = self.sim(clocks_480())
        self.assertEqual(s.outcome[:2], ("exit", 0), s.stderr)
        c = s.regs.clocks()
        self.assertEqual(c["sys_ck"], 480e6)
        self.assertEqual(c["hclk"], 240e6)
        self.assertEqual(c["vos"], 0)
        self.assertEqual(s.regs.violations, [])

    def test_poll_without_model_spins(self):
        # Poll a bit nothing sets (RCC_CR.PLL1RDY without PLL1ON): the limit stops it.
        s = self.sim([(RCC, 1 << 25, 1 << 25)], limit=50_000)
        self.assertEqual(s.outcome[0], "limit")

    def test_semihosting_exit_codes(self):
        self.assertEqual(self.sim([], "exit_ok").outcome[:2], ("exit", 0))
        self.assertEqual(self.sim([], "exit_fail").outcome[:3], ("exit", 1, 0x20023))

    def test_faults(self):
        self.assertIn("UDF", self.sim([], "udf").outcome[1])
        self.assertIn("BKPT 0x1", self.sim([], "bkpt").outcome[1])
        o = self.sim([], "bad_read").outcome
        self.assertEqual(o[0], "error")
        self.assertIn("0x60000000", o[1])
        self.assertIn("stack overflow", self.sim([], "stack_overflow").outcome[1])

    def test_unmodelled_read_warns_once(self):
        s = self.sim([], "unmodelled")
        self.assertEqual(s.outcome[:2], ("exit", 0))
        self.assertIn("0x58020000", s.stderr)
        self.assertEqual(s.stderr.count("warning"), 1)

    def test_wfi_detected(self):
        o = self.sim([], "wfi", debugger=False).outcome
        self.assertEqual(o[:2], ("wfi", 1), "asleep with PRIMASK set")

    def test_cyccnt_counts_instructions(self):
        t = [(DCB + 0xC, 1 << 24, 0), (DWT + 0xFB0, 0xC5AC_CE55, 0), (DWT, 1, 0)]
        s = self.sim(t, "cyccnt")
        self.assertEqual(s.outcome[:2], ("exit", 0))
        delta = struct.unpack("<I", s.uc.mem_read(0x2000_0000, 4))[0]
        # 100 iterations of `subs; bne` (2 instructions) between the reads, counted per block.
        self.assertTrue(198 <= delta <= 212, delta)
        s = self.sim(t[:1] + t[2:], "cyccnt")   # no LAR unlock: CTRL write ignored, no count
        self.assertEqual(struct.unpack("<I", s.uc.mem_read(0x2000_0000, 4))[0], 0)

    def test_c_and_python_counters_agree(self):
        # 200 000 blocks of 9 instructions: several emulation slices, exact in both counters.
        s = Asm(0x0800_0040)
        s.ldr_lit(5, 200_000)
        s.label("spin")
        s.h(*[NOP] * 7)
        s.h(0x3D01)          # subs r5, #1
        s.b(NE, "spin")
        s.h(0x2018)
        s.ldr_lit(1, 0x20026)
        s.h(0xBEAB)
        code = s.assemble()
        image = bytearray(0x100)
        struct.pack_into("<II", image, 0, 0x2000_4000, 0x0800_0041)
        image[0x40:0x40 + len(code)] = code
        path = os.path.join(self.tmp.name, "loop.elf")
        write_elf(path, bytes(image))
        counts = []
        for python in ("", "1"):
            os.environ["H7SIM_PYTHON_COUNTER"] = python
            h7sim._CLIB = None
            try:
                sim = h7sim.Sim(h7sim.Elf(path))
                sim.run()
            finally:
                os.environ.pop("H7SIM_PYTHON_COUNTER")
                h7sim._CLIB = None
            self.assertEqual(sim.outcome[:2], ("exit", 0))
            counts.append((sim.icount, sim.blocks, sim.counter is None))
        self.assertEqual(counts[0][:2], (1 + 200_000 * 9 + 3, 200_001))
        self.assertEqual(counts[0][:2], counts[1][:2])
        self.assertTrue(counts[1][2], "second run used the Python counter")

    # -- the whole script: clock checks and exit codes -------------------------------------
    def test_main_passes_a_correct_configuration(self):
        code, out, err = self.main(clocks_480() + caches_and_dwt())
        self.assertEqual(code, 0, out + err)
        self.assertIn("sys_ck 480 MHz", out)
        self.assertIn("VOS0", out)
        self.assertNotIn("[FAIL]", out)

    def test_main_fails_on_low_latency(self):
        code, out, _ = self.main(clocks_480(latency=3) + caches_and_dwt())
        self.assertEqual(code, 1)
        self.assertIn("[FAIL] FLASH_ACR.LATENCY 3 >= RM0433 Table 17's 4 WS", out)

    def test_main_fails_without_overdrive(self):
        code, out, _ = self.main(clocks_480(oden=False) + caches_and_dwt())
        self.assertEqual(code, 1)
        self.assertIn("exceed VOS1", out)

    def test_main_fails_without_caches(self):
        code, out, _ = self.main(clocks_480())
        self.assertEqual(code, 1)
        self.assertIn("[FAIL] D-cache enabled", out)

    def test_main_rev_y_expects_400(self):
        code, out, _ = self.main(clocks_480() + caches_and_dwt(), "exit_ok", "--rev", "Y")
        self.assertEqual(code, 1)
        self.assertIn("[FAIL] sys_ck = 400 MHz on revision Y", out)

    def test_main_firmware_failure_exits_1(self):
        code, out, _ = self.main(clocks_480() + caches_and_dwt(), "exit_fail")
        self.assertEqual(code, 1)
        self.assertIn("reason 0x20023 -> exit 1", out)

    def test_main_wfi_with_debugger_is_an_error(self):
        code, out, _ = self.main(clocks_480() + caches_and_dwt(), "wfi")
        self.assertEqual(code, 1)
        self.assertIn("although a debugger is attached", out)

    def test_main_rejects_non_h743_elf(self):
        path = os.path.join(self.tmp.name, "untagged.elf")
        write_elf(path, program([], with_tag=False))
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            self.assertEqual(h7sim.main([path]), 2)

    @unittest.skipUnless(os.environ.get("H7SIM_ELF"), "set H7SIM_ELF to the firmware ELF")
    def test_real_firmware(self):
        r = subprocess.run([sys.executable, os.path.join(HERE, "h7sim.py"), os.environ["H7SIM_ELF"]],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr[-4000:])
        self.assertIn("sys_ck 480 MHz", r.stdout)
        self.assertIn("PASS:", r.stdout)


if __name__ == "__main__":
    unittest.main()
