#!/usr/bin/env node
// Headless Raspberry Pi Pico (RP2040) runner on the rp2040js 1.4.1 emulator (core 0 only).
//
//   node run.mjs FIRMWARE.elf|FIRMWARE.uf2 [--max-cycles N] [--rtt-out FILE] [--boot rom|vtor]
//                [--no-debugger] [--max-warnings N]
//
// Exit status: 0 the firmware passed (semihosting exit ADP_Stopped_ApplicationExit, or its last
// UART0 verdict line starts with `PASS:`), 1 it failed (other semihosting exit, `FAIL` line,
// crash = BKPT/UDF, emulator warnings/errors, no verdict), 2 usage/load/boot error (bad file,
// segment outside flash/SRAM, boot2 CRC mismatch), 124 --max-cycles reached without a verdict.
//
// START-UP: what the real RP2040 does on a flash boot, and what of it is emulated here.
// rp2040js ships no boot ROM image (the 16 KiB ROM area reads as zeros), so this script plays the
// ROM's part for a flash boot:
//   emulated  - boot2 check: CRC-32/MPEG-2 of flash bytes 0..251 must equal the word at 252; on a
//               mismatch the real ROM falls back to USB (BOOTSEL) boot - here: `error:`, exit 2.
//             - boot2 is copied to SRAM 0x20041f00..0x20042000 and entered in Thumb state with
//               SP = 0x20041f00 (not the ROM's 0x20042000, which would let boot2's pushes
//               overwrite its own literal pool) and LR = 0 (boot2 then "vectors into flash":
//               VTOR = 0x10000100, MSP and PC from that table). boot2's cycles count.
//             - clk_sys as the ROM leaves it: from clk_ref = ROSC (rp2040js: 6.5 MHz) with XOSC
//               and PLLs off. The script syncs rp2040js's clk_sys (whose constructor default is
//               125 MHz) to its own CLOCKS registers before the first instruction; it then follows
//               the firmware's clock set-up (XOSC 12 MHz, PLL_SYS dividers, CLK_SYS_CTRL/DIV).
//   skipped   - the ROM's reset handler itself and its cycles, the watchdog-scratch reboot vectors,
//               the BOOTSEL (QSPI CS) check, USB mass-storage/PICOBOOT boot;
//             - core 1: on hardware the ROM parks it in a WFE loop waiting for the SIO-FIFO launch
//               sequence; rp2040js does not emulate a second core at all;
//             - the ROM's SSI/IO_QSPI/pad set-up for 03h serial flash reads and its retries over
//               SCK settings; flash is always readable in rp2040js (no XIP set-up needed), and its
//               SSI model answers boot2's commands.
//   --boot vtor skips boot2 too: VTOR = 0x10000100, SP/PC from that vector table.
//
// CYCLES (rp2040js 1.4.1, dist/esm/cortex-m0-core.js, `core.cycles`): 1 per instruction; +1 taken
// conditional branch and B; BL 3; BX/BLX 2; MOV/ADD to PC +1; LDR/STR (all widths) +1 for memory
// incl. flash and PPB, +3 (load) / +4 (store) for APB peripherals (0x4000_0000..), +0 for SIO;
// LDM/STM +1 per register; PUSH/POP +1 per low register (LR free), PC in POP +2; MRS/MSR/DMB/DSB/ISB 3; MULS 1 (RP2040's
// single-cycle multiplier); WFI/WFE 2. NOT modelled: flash/XIP wait states and XIP cache misses
// (code and data in flash cost as if in zero-wait SRAM), SRAM bank/bus contention, DMA, exception
// entry and return (0 cycles; 15 to enter on an M0+), the second core. Emulated cycles are therefore a
// lower bound for code that streams from flash.
//
// TIME: the script ticks rp2040js's simulation clock after every instruction by that
// instruction's cycles at the current clk_sys (computed from a base, so no rounding drift), and
// jumps straight to the next alarm while the core sleeps in WFI/WFE. So the TIMER (1 MHz,
// TIMELR/TIMEHR) advances with emulated time at clk_sys, and SysTick (which rp2040js clocks at
// clk_sys whatever CLKSOURCE says) counts core cycles. rp2040js reloads SysTick at the very instant
// it reaches 0 (period RVR, and a write to CVR raises a spurious wrap); this script replaces that
// with the hardware behaviour: period RVR+1, wrap (COUNTFLAG, exception) on the 1 -> 0 step only.
//
// DEBUGGER: the script is the debugger. PPB reads are dispatched by RP2040.readUint32 to
// `mcu.ppb.readUint32(offset)` (an instance method, replaceable); rp2040js itself does not
// implement DHCSR (it would warn and read 0xffffffff). Here DHCSR (0xE000EDF0) reads C_DEBUGEN = 1
// (0 with --no-debugger, where a semihosting BKPT is then a crash, as it would HardFault on a
// real core with no debugger attached); writes to DHCSR are ignored.

import { spawn } from 'node:child_process';
import { accessSync, closeSync, constants, openSync, readFileSync, writeSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { RP2040 } from 'rp2040js';
import { BOOT2_SIZE, checkBoot2 } from './boot2.mjs';
import { isElf, parseElf } from './elf.mjs';
import { FLASH_START, parseUf2, UF2_MAGIC_START0 } from './uf2.mjs';

export const FLASH_SIZE = 16 * 1024 * 1024; // rp2040js's flash array (a Pico has 2 MiB)
export const SRAM_START = 0x20000000;
export const SRAM_SIZE = 264 * 1024;
export const BOOT2_SRAM = 0x20041f00;
export const VECTOR_TABLE = 0x10000100;
const DHCSR_OFFSET = 0xdf0; // 0xE000EDF0 within the PPB page 0xE000E000
const SYST_CVR_OFFSET = 0x018;
const SYSTICK_MODULO = 0x1000000; // 24-bit counter
const ADP_STOPPED_APPLICATION_EXIT = 0x20026;
const BATCH = 1024; // instructions between RTT drains and cycle-limit checks
const YIELD_BATCHES = 256; // batches between returns to the event loop (defmt-print pipe)

const hex = (v) => `0x${(v >>> 0).toString(16).padStart(8, '0')}`;

export class LoadError extends Error {}

/** Reads an ELF or UF2 file: { kind, segments: [{ paddr, data }], elf? }. Throws LoadError. */
export function readImage(path) {
  let bytes;
  try {
    bytes = new Uint8Array(readFileSync(path));
  } catch (e) {
    throw new LoadError(`cannot read ${path}: ${e.code ?? e.message}`);
  }
  try {
    if (isElf(bytes)) {
      const elf = parseElf(bytes);
      return { kind: 'elf', segments: elf.segments, elf };
    }
    if (bytes.length >= 4 && new DataView(bytes.buffer).getUint32(0, true) === UF2_MAGIC_START0) {
      return { kind: 'uf2', segments: parseUf2(bytes).map((b) => ({ paddr: b.addr, data: b.data })) };
    }
  } catch (e) {
    throw new LoadError(`${path}: ${e.message}`);
  }
  throw new LoadError(`${path}: neither an ELF nor a UF2 file`);
}

/** Finds an executable on PATH. */
function which(name) {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      /* not here */
    }
  }
  return null;
}

/**
 * One emulated Pico running one image. Construct, then `await run()` (or `step()` by hand, as the
 * tests do). Options: boot ('rom'|'vtor'), debuggerAttached (bool), maxCycles, maxWarnings,
 * rttSink ({ write(bytes), end() } or null), onUartLine(line), onSemihostingOutput(bytes),
 * log(line) for the script's own diagnostics.
 */
export class Pico {
  constructor(image, opts = {}) {
    this.opts = {
      boot: 'rom',
      debuggerAttached: true,
      maxCycles: 20e9,
      maxWarnings: 5,
      rttSink: null,
      onUartLine: () => {},
      onSemihostingOutput: () => {},
      log: () => {},
      ...opts,
    };
    this.stop = null; // { kind: 'exit'|'crash'|'asleep'|'cycle-limit'|'warnings'|'emulator-error', ... }
    this.instructions = 0;
    this.sleptCycles = 0;
    this.warnings = 0;
    this.uartLine = [];
    this.verdictLine = null;
    this.rttFullSeen = 0;
    this.rttBytes = 0;

    const mcu = (this.mcu = new RP2040());
    mcu.logger = {
      debug() {},
      info() {},
      warn: (component, msg) => this.emulatorWarning(component, msg),
      error: (component, msg) => this.halt({ kind: 'emulator-error', message: `[${component}] ${msg}` }),
    };
    mcu.uart[0].onByte = (b) => this.uartByte(b);
    mcu.onBreak = (code) => this.onBreak(code);
    this.installDebugRegisters();
    this.installSysTickFix();

    // rp2040js's constructor ran reset(), which fills flash with 0xFF: load after it.
    this.load(image.segments);
    this.rtt = image.elf?.symbol('_SEGGER_RTT') ? { addr: image.elf.symbol('_SEGGER_RTT').value, ready: false } : null;

    // clk_sys as the boot ROM leaves it (ROSC), per rp2040js's own CLOCKS model.
    mcu.updateClocks();
    this.rebaseClock();
    mcu.addClockListener(() => this.rebaseClock());
    this.boot();
  }

  load(segments) {
    const { mcu } = this;
    for (const { paddr, data } of segments) {
      const end = paddr + data.length;
      if (paddr >= FLASH_START && end <= FLASH_START + FLASH_SIZE) {
        mcu.flash.set(data, paddr - FLASH_START);
      } else if (paddr >= SRAM_START && end <= SRAM_START + SRAM_SIZE) {
        mcu.sram.set(data, paddr - SRAM_START);
      } else {
        throw new LoadError(`segment ${hex(paddr)}..${hex(end)} (${data.length} bytes) is outside flash ${hex(FLASH_START)}..${hex(FLASH_START + FLASH_SIZE)} and SRAM ${hex(SRAM_START)}..${hex(SRAM_START + SRAM_SIZE)}`);
      }
    }
  }

  boot() {
    const { mcu } = this;
    const { core } = mcu;
    if (this.opts.boot === 'rom') {
      const boot2 = mcu.flash.subarray(0, BOOT2_SIZE);
      const crc = checkBoot2(boot2);
      if (!crc.ok) {
        throw new LoadError(`boot2 CRC-32/MPEG-2 of flash 0x10000000..0x100000fc is ${hex(crc.computed)}, stored ${hex(crc.stored)}: the boot ROM would fall back to USB boot (no boot2 in the image? use --boot vtor)`);
      }
      mcu.sram.set(boot2, BOOT2_SRAM - SRAM_START);
      core.VTOR = 0;
      core.SP = BOOT2_SRAM;
      core.LR = 0;
      core.PC = BOOT2_SRAM;
    } else if (this.opts.boot === 'vtor') {
      const sp = mcu.readUint32(VECTOR_TABLE);
      const pc = mcu.readUint32(VECTOR_TABLE + 4);
      const inMemory = (a) => (a >= FLASH_START && a < FLASH_START + FLASH_SIZE) || (a >= SRAM_START && a <= SRAM_START + SRAM_SIZE);
      if (!(pc & 1) || !inMemory(pc) || !inMemory(sp)) {
        throw new LoadError(`no vector table at ${hex(VECTOR_TABLE)}: initial SP ${hex(sp)}, reset vector ${hex(pc)}`);
      }
      core.VTOR = VECTOR_TABLE;
      core.SP = sp;
      core.LR = 0xffffffff;
      core.PC = pc & ~1;
    } else {
      throw new LoadError(`--boot ${this.opts.boot}: expected rom or vtor`);
    }
    core.cycles = 0;
  }

  // --- time --------------------------------------------------------------------------------

  get totalCycles() {
    return this.mcu.core.cycles + this.sleptCycles;
  }

  /** Emulated nanoseconds = base + (cycles since base) / clk_sys: no accumulated rounding. */
  rebaseClock() {
    this.baseNanos = this.mcu.clock.nanos;
    this.baseCycles = this.totalCycles;
    this.nanosPerCycle = 1e9 / this.mcu.clkSys;
  }

  tickClock() {
    const { clock } = this.mcu;
    clock.tick(this.baseNanos + (this.totalCycles - this.baseCycles) * this.nanosPerCycle - clock.nanos);
  }

  /** The core waits in WFI/WFE: jump to the next alarm. False when nothing can wake it. */
  sleep() {
    const { clock, core } = this.mcu;
    if (core.interruptsUpdated && core.checkForInterrupts()) {
      core.waiting = false; // an interrupt was already pending
      return true;
    }
    if (!clock.nextAlarm) return false;
    const cycles = Math.max(1, Math.ceil(clock.nanosToNextAlarm / this.nanosPerCycle - 1e-6));
    this.sleptCycles += cycles;
    this.tickClock();
    if (core.waiting && core.interruptsUpdated && core.checkForInterrupts()) core.waiting = false;
    return true;
  }

  /** Executes one instruction (or one sleep interval) and advances the clock. */
  step() {
    this.runBatch(1);
  }

  runBatch(n) {
    const { core, clock } = this.mcu;
    for (let i = 0; i < n && !this.stop; i++) {
      if (core.waiting) {
        if (!this.sleep()) this.halt({ kind: 'asleep' });
        continue;
      }
      core.executeInstruction();
      this.instructions++;
      clock.tick(this.baseNanos + (core.cycles + this.sleptCycles - this.baseCycles) * this.nanosPerCycle - clock.nanos);
    }
  }

  /** Runs to the end; resolves to the result (see `result()`). */
  async run() {
    const t0 = process.hrtime.bigint();
    try {
      while (!this.stop) {
        for (let b = 0; b < YIELD_BATCHES && !this.stop; b++) {
          this.runBatch(BATCH);
          this.drainRtt();
          if (!this.stop && this.totalCycles >= this.opts.maxCycles) this.halt({ kind: 'cycle-limit' });
        }
        if (this.opts.rttSink?.async) await new Promise((r) => setImmediate(r));
      }
    } catch (e) {
      this.halt({ kind: 'emulator-error', message: `exception in the emulator at pc=${hex(this.mcu.core.PC)}: ${e.stack ?? e}` });
    }
    this.drainRtt();
    this.flushUart();
    this.hostSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
    return this.result();
  }

  halt(stop) {
    if (!this.stop) this.stop = stop;
  }

  emulatorWarning(component, msg) {
    this.warnings++;
    this.opts.log(`rp2040js warning [${component}] ${msg} (pc=${hex(this.mcu.core.PC)})`);
    if (this.warnings >= this.opts.maxWarnings) {
      this.halt({ kind: 'warnings', message: `${this.warnings} emulator warnings (unimplemented peripheral or instruction, invalid address): stopped` });
    }
  }

  // --- debugger: DHCSR, SysTick ------------------------------------------------------------

  installDebugRegisters() {
    const { ppb } = this.mcu;
    const read = ppb.readUint32.bind(ppb);
    const write = ppb.writeUint32.bind(ppb);
    ppb.readUint32 = (offset) => (offset === DHCSR_OFFSET ? (this.opts.debuggerAttached ? 1 : 0) : read(offset));
    ppb.writeUint32 = (offset, value) => {
      if (offset === DHCSR_OFFSET) return; // debugger-owned (and needs DBGKEY): ignored
      if (offset === SYST_CVR_OFFSET) return this.sysTickClear();
      write(offset, value);
    };
  }

  /** Hardware SysTick on top of rp2040js's counter (Timer32, decrementing at clk_sys): wrap on
   *  1 -> 0, then RVR on the next cycle (period RVR + 1); CVR writes clear it without a wrap. */
  installSysTickFix() {
    const { ppb, clock } = this.mcu;
    const timer = ppb.systickTimer;
    ppb.systickAlarm.enable = false; // rp2040js's own reload-at-zero alarm
    let wrapNanos = 0; // exact time of the next 1 -> 0 step
    // The counter reads 0 during the wrap cycle and RVR one cycle later. Timer32 shows one value
    // per instant, so at the wrap it restarts from RVR + 1 (mod 2^24: for RVR = 0xFFFFFF that is
    // 0, the exact hardware sequence; otherwise a read in the wrap cycle itself sees RVR + 1).
    const restart = (nanos) => {
      timer.baseValue = (ppb.systickReload + 1) % SYSTICK_MODULO;
      timer.baseNanos = nanos;
      timer.updated(); // -> schedule()
    };
    const alarm = clock.createAlarm(() => {
      ppb.systickCountFlag = true;
      if (ppb.systickIntEnable) {
        this.mcu.core.pendingSystick = true;
        this.mcu.core.interruptsUpdated = true;
      }
      restart(wrapNanos);
    });
    const schedule = () => {
      alarm.cancel();
      if (!timer.enable || !timer.frequency) return;
      // Timer32 (decrementing at clk_sys) counts from baseValue at baseNanos
      wrapNanos = timer.baseNanos + timer.toNanos(timer.baseValue % SYSTICK_MODULO || SYSTICK_MODULO);
      // 1 ps early, so that float rounding cannot push it past the tick that ends on the boundary
      alarm.schedule(Math.max(0, wrapNanos - clock.nanos - 1e-3));
    };
    timer.listeners.push(schedule);
    this.sysTickClear = () => {
      // CVR write: the counter is 0 now and RVR next cycle; no wrap, COUNTFLAG cleared
      ppb.systickCountFlag = false;
      restart(clock.nanos);
    };
  }

  // --- I/O ---------------------------------------------------------------------------------

  uartByte(b) {
    if (b === 0x0a) {
      const line = Buffer.from(this.uartLine).toString('latin1').replace(/\r$/, '');
      this.uartLine = [];
      if (line.startsWith('PASS:') || line.startsWith('FAIL')) this.verdictLine = line;
      this.opts.onUartLine(line);
    } else {
      this.uartLine.push(b);
    }
  }

  flushUart() {
    if (this.uartLine.length) this.uartByte(0x0a);
  }

  readBytes(addr, n) {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.mcu.readUint8((addr + i) >>> 0);
    return out;
  }

  readCString(addr, max = 65536) {
    const out = [];
    for (let i = 0; i < max; i++) {
      const b = this.mcu.readUint8((addr + i) >>> 0);
      if (b === 0) break;
      out.push(b);
    }
    return Uint8Array.from(out);
  }

  onBreak(code) {
    const { core } = this.mcu;
    const pc = core.PC - 2; // rp2040js has advanced PC past the first halfword
    const opcode = this.mcu.readUint16(pc);
    const isBkpt = opcode >> 8 === 0xbe;
    if (isBkpt && code === 0xab && this.opts.debuggerAttached) {
      this.semihosting();
      return;
    }
    const what = isBkpt ? `bkpt #${code}` : `udf #${code}`;
    const why = isBkpt && code === 0xab ? ' (semihosting call with no debugger attached: a real core would HardFault)' : '';
    this.halt({ kind: 'crash', pc, message: `firmware crashed (bkpt/udf) at pc=${hex(pc)}: ${what}${why}` });
  }

  semihosting() {
    const { core } = this.mcu;
    const op = core.registers[0];
    const arg = core.registers[1];
    const word = (i) => this.mcu.readUint32((arg + 4 * i) >>> 0);
    let result = 0;
    switch (op) {
      case 0x01: {
        // SYS_OPEN [name, mode, length]: only the console ":tt" (r: stdin, w: stdout, a: stderr)
        const name = Buffer.from(this.readBytes(word(0), word(2))).toString('latin1');
        const mode = word(1);
        result = name === ':tt' ? (mode < 4 ? 1 : mode < 8 ? 2 : 3) : -1;
        break;
      }
      case 0x03: // SYS_WRITEC
        this.opts.onSemihostingOutput(this.readBytes(arg, 1));
        break;
      case 0x04: // SYS_WRITE0
        this.opts.onSemihostingOutput(this.readCString(arg));
        break;
      case 0x05: {
        // SYS_WRITE [handle, data, length]: r0 = bytes NOT written
        const [handle, data, len] = [word(0), word(1), word(2)];
        if (handle === 2 || handle === 3) {
          this.opts.onSemihostingOutput(this.readBytes(data, len), handle);
          result = 0;
        } else {
          result = len;
        }
        break;
      }
      case 0x18: // SYS_EXIT (AArch32: r1 = reason code)
        this.drainRtt();
        this.halt({ kind: 'exit', reason: arg, subcode: 0, success: arg === ADP_STOPPED_APPLICATION_EXIT });
        break;
      case 0x20: {
        // SYS_EXIT_EXTENDED [reason, subcode]
        const [reason, subcode] = [word(0), word(1)];
        this.drainRtt();
        this.halt({ kind: 'exit', reason, subcode, success: reason === ADP_STOPPED_APPLICATION_EXIT && subcode === 0 });
        break;
      }
      default:
        this.emulatorWarning('semihosting', `unsupported operation ${hex(op)}: r0 = -1`);
        result = -1;
    }
    core.registers[0] = result >>> 0;
  }

  /** Reads RTT up-buffer 0 like a probe: new bytes between RdOff and WrOff, then RdOff = WrOff. */
  drainRtt() {
    const { rtt, mcu } = this;
    if (!rtt || !this.opts.rttSink) return;
    const cb = rtt.addr;
    if (!rtt.ready) {
      // the firmware's start-up code initialises the control block (.data): wait for its ID
      if (Buffer.from(this.readBytes(cb, 10)).toString('latin1') !== 'SEGGER RTT') return;
      rtt.ready = true;
      // like probe-rs: put up-channel 0 in BLOCK_IF_FULL mode (no data lost; defmt-rtt then
      // treats the host as connected)
      const flags = mcu.readUint32(cb + 44);
      mcu.writeUint32(cb + 44, ((flags & ~3) | 2) >>> 0);
    }
    const buf = mcu.readUint32(cb + 28);
    const size = mcu.readUint32(cb + 32);
    const wr = mcu.readUint32(cb + 36);
    const rd = mcu.readUint32(cb + 40);
    if (wr === rd) return;
    if (wr >= size || rd >= size || buf < SRAM_START || buf + size > SRAM_START + SRAM_SIZE) {
      this.halt({ kind: 'emulator-error', message: `RTT up-buffer 0 is corrupt (buffer ${hex(buf)}, size ${size}, WrOff ${wr}, RdOff ${rd})` });
      return;
    }
    if ((wr + 1) % size === rd) this.rttFullSeen++;
    const base = buf - SRAM_START;
    const chunks = wr > rd ? [mcu.sram.subarray(base + rd, base + wr)] : [mcu.sram.subarray(base + rd, base + size), mcu.sram.subarray(base, base + wr)];
    for (const c of chunks) {
      this.rttBytes += c.length;
      this.opts.rttSink.write(Uint8Array.from(c));
    }
    mcu.writeUint32(cb + 40, wr);
  }

  // --- verdict -----------------------------------------------------------------------------

  clockDescription() {
    const { clocks, pllSys } = this.mcu;
    const sysAux = clocks.sysCtrl & 1;
    const aux = (clocks.sysCtrl >>> 5) & 7;
    if (sysAux && aux === 0) return { pll: pllSys.fbdiv > 0, text: 'PLL_SYS' };
    const src = sysAux ? ['PLL_USB', 'PLL_USB', 'ROSC', 'XOSC', 'GPIN0', 'GPIN1'][aux] ?? 'aux?' : `clk_ref from ${['ROSC', 'PLL_USB', 'XOSC', '?'][clocks.refCtrl & 3]}`;
    return { pll: false, text: `${src}: the firmware never set up PLL_SYS` };
  }

  /** { code, message } from how the run stopped. */
  result() {
    const s = this.stop;
    const fromUart = (noVerdictCode, why) => {
      if (this.verdictLine?.startsWith('PASS:')) return { code: 0, message: `${why}; UART0 verdict: ${this.verdictLine}` };
      if (this.verdictLine) return { code: 1, message: `error: ${why}; UART0 verdict: ${this.verdictLine}` };
      return { code: noVerdictCode, message: `error: ${why}, no verdict (no UART0 line starting with PASS: or FAIL)` };
    };
    switch (s?.kind) {
      case 'exit':
        return s.success
          ? { code: 0, message: `semihosting exit: ${hex(s.reason)} (ADP_Stopped_ApplicationExit), success` }
          : { code: 1, message: `error: semihosting exit: reason ${hex(s.reason)}, subcode ${s.subcode}: failure` };
      case 'asleep':
        return fromUart(1, `the core sleeps for good at pc=${hex(this.mcu.core.PC)} (WFI/WFE, no alarm or interrupt pending)`);
      case 'cycle-limit':
        return fromUart(124, `--max-cycles ${this.opts.maxCycles} reached`);
      case 'crash':
      case 'warnings':
      case 'emulator-error':
        return { code: 1, message: `error: ${s.message}` };
      default:
        return { code: 1, message: 'error: the run did not stop' };
    }
  }

  summary() {
    const clk = this.clockDescription();
    const slept = this.sleptCycles ? ` (+${this.sleptCycles} cycles asleep in WFI/WFE)` : '';
    const secs = this.hostSeconds?.toFixed(1) ?? '?';
    return `rp2040js: ${this.mcu.core.cycles} cycles (core.cycles)${slept}, ${this.instructions} instructions, ${secs} s host time, clk_sys ${Math.round(this.mcu.clkSys)} Hz (${clk.text})`;
  }
}

/** Opens where the defmt bytes go: --rtt-out FILE, else `defmt-print -e ELF` (stdout -> our
 *  stderr) when it is on PATH, else nowhere (the summary says how many bytes were skipped). */
function openRttSink(rttOut, elfPath, log) {
  if (rttOut) {
    const fd = openSync(rttOut, 'w');
    return { write: (b) => writeSync(fd, b), end: async () => closeSync(fd) };
  }
  const tool = which('defmt-print');
  if (!tool) {
    let n = 0;
    return {
      write: (b) => (n += b.length),
      end: async () => n && log(`rtt: ${n} bytes of defmt frames not decoded (defmt-print not on PATH; use --rtt-out FILE)`),
    };
  }
  const child = spawn(tool, ['-e', elfPath], { stdio: ['pipe', 2, 'inherit'] });
  child.stdin.on('error', () => {}); // defmt-print exiting early must not kill the run
  const done = new Promise((resolve) => child.on('close', resolve));
  return {
    async: true,
    write: (b) => child.stdin.write(b),
    end: async () => {
      child.stdin.end();
      await done;
    },
  };
}

function parseArgs(argv) {
  const usage = 'usage: node run.mjs FIRMWARE.elf|FIRMWARE.uf2 [--max-cycles N] [--rtt-out FILE] [--boot rom|vtor] [--no-debugger] [--max-warnings N]';
  const o = { boot: 'rom', maxCycles: 20e9, rttOut: null, debuggerAttached: true, maxWarnings: 5, file: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new LoadError(`${a} needs a value\n${usage}`);
      return argv[++i];
    };
    if (a === '--max-cycles') o.maxCycles = Number(value());
    else if (a === '--rtt-out') o.rttOut = value();
    else if (a === '--boot') o.boot = value();
    else if (a === '--max-warnings') o.maxWarnings = Number(value());
    else if (a === '--no-debugger') o.debuggerAttached = false;
    else if (a === '-h' || a === '--help') throw new LoadError(usage);
    else if (a.startsWith('-') || o.file) throw new LoadError(`unexpected argument ${a}\n${usage}`);
    else o.file = a;
  }
  if (!o.file) throw new LoadError(usage);
  if (!(o.maxCycles > 0)) throw new LoadError('--max-cycles: expected a positive number');
  if (!(o.maxWarnings >= 1)) throw new LoadError('--max-warnings: expected a number >= 1');
  if (o.boot !== 'rom' && o.boot !== 'vtor') throw new LoadError(`--boot ${o.boot}: expected rom or vtor`);
  return o;
}

export async function main(argv) {
  const log = (line) => process.stderr.write(`${line}\n`);
  let pico;
  let sink = null;
  try {
    const o = parseArgs(argv);
    const image = readImage(o.file);
    if (image.kind === 'elf' && image.elf.symbol('_SEGGER_RTT')) sink = openRttSink(o.rttOut, o.file, log);
    else if (o.rttOut) log(`rtt: skipped (${image.kind === 'uf2' ? 'a UF2 has no symbol table' : 'no _SEGGER_RTT in the ELF'}); ${o.rttOut} not written`);
    pico = new Pico(image, {
      boot: o.boot,
      debuggerAttached: o.debuggerAttached,
      maxCycles: o.maxCycles,
      maxWarnings: o.maxWarnings,
      rttSink: sink,
      onUartLine: (line) => process.stdout.write(`${line}\n`),
      onSemihostingOutput: (bytes, handle) => (handle === 3 ? process.stderr : process.stdout).write(bytes),
      log,
    });
  } catch (e) {
    if (!(e instanceof LoadError)) throw e;
    await sink?.end();
    log(e.message.startsWith('usage:') ? e.message : `error: ${e.message}`);
    return 2;
  }
  const { code, message } = await pico.run();
  await sink?.end();
  if (pico.rttFullSeen) log(`warning: the RTT buffer was found full ${pico.rttFullSeen} times: the firmware may have waited for the host (those cycles count)`);
  log(message);
  log(pico.summary());
  return code;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
