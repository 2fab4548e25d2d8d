import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Pico } from '../run.mjs';
import { elfToUf2 } from '../uf2.mjs';
import { parseElf } from '../elf.mjs';
import { boot2, buildElf, CODE, firmwareElf, Thumb } from './synth.mjs';

const RUN = fileURLToPath(new URL('../run.mjs', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'pico-run-test-'));
let n = 0;

/** Writes the ELF (or UF2) and runs run.mjs on it: { status, stdout, stderr }. */
function run(bytes, args = [], ext = 'elf') {
  const path = join(dir, `t${n++}.${ext}`);
  writeFileSync(path, bytes);
  // no defmt-print from the environment: RTT stays in this process
  const r = spawnSync('node', [RUN, path, ...args], { encoding: 'utf8', env: { ...process.env, PATH: '/usr/bin:/bin' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, path };
}

const UART0_DR = 0x40034000;

/** SYS_WRITE0 "text", then SYS_EXIT with `reason`. */
function semihostingProgram(text, reason = 0x20026) {
  return new Thumb(CODE)
    .movs(0, 4).adr(1, 'msg').bkpt(0xab)
    .movs(0, 0x18).ldrLit(1, 'reason').bkpt(0xab)
    .label('hang').b('hang')
    .align4().label('reason').word(reason).label('msg').ascii(text);
}

/** Writes `text` to UART0 byte by byte, then sleeps (WFI with nothing to wake it). */
function uartProgram(text) {
  return new Thumb(CODE)
    .ldrLit(0, 'uart').adr(1, 'msg')
    .label('next').op(0x780a) // ldrb r2, [r1]
    .op(0x2a00) // cmp r2, #0
    .beq('done').str(2, 0).adds(1, 1).b('next')
    .label('done').wfi().b('done')
    .align4().label('uart').word(UART0_DR).label('msg').ascii(text);
}

test('semihosting SYS_WRITE0 + SYS_EXIT success, booted through boot2 (--boot rom)', () => {
  const r = run(firmwareElf(semihostingProgram('hello from the pico\n'), { boot2Area: boot2() }));
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'hello from the pico\n');
  assert.match(r.stderr, /semihosting exit: 0x00020026 \(ADP_Stopped_ApplicationExit\), success/);
  assert.match(r.stderr, /^rp2040js: \d+ cycles \(core\.cycles\), \d+ instructions, [\d.]+ s host time, clk_sys 6500000 Hz \(clk_ref from ROSC: the firmware never set up PLL_SYS\)$/m);
});

test('semihosting failure exit, --boot vtor without boot2, UF2 input, boot2 CRC refused', () => {
  const fail = run(firmwareElf(semihostingProgram('x\n', 0x20023)), ['--boot', 'vtor']);
  assert.equal(fail.status, 1);
  assert.match(fail.stderr, /^error: semihosting exit: reason 0x00020023/m);
  const noBoot2 = run(firmwareElf(semihostingProgram('x\n')));
  assert.equal(noBoot2.status, 2);
  assert.match(noBoot2.stderr, /^error: boot2 CRC-32\/MPEG-2 .* stored 0xffffffff: the boot ROM would fall back to USB boot/m);
  const bad = boot2();
  bad[5] ^= 0x40;
  assert.equal(run(firmwareElf(semihostingProgram('x\n'), { boot2Area: bad })).status, 2);
  const uf2 = run(elfToUf2(firmwareElf(semihostingProgram('from uf2\n'), { boot2Area: boot2() })), [], 'uf2');
  assert.equal(uf2.status, 0, uf2.stderr);
  assert.equal(uf2.stdout, 'from uf2\n');
});

test('UART0 verdict lines when the core sleeps for good', () => {
  const pass = run(firmwareElf(uartProgram('booting\nPASS: all good\n')), ['--boot', 'vtor']);
  assert.equal(pass.status, 0, pass.stderr);
  assert.equal(pass.stdout, 'booting\nPASS: all good\n');
  assert.match(pass.stderr, /sleeps for good .*UART0 verdict: PASS: all good/);
  const fail = run(firmwareElf(uartProgram('PASS: early\nFAIL: image 3\n')), ['--boot', 'vtor']);
  assert.equal(fail.status, 1);
  assert.match(fail.stderr, /^error: .*UART0 verdict: FAIL: image 3$/m);
  const none = run(firmwareElf(uartProgram('nothing to say')), ['--boot', 'vtor']);
  assert.equal(none.status, 1);
  assert.equal(none.stdout, 'nothing to say\n');
  assert.match(none.stderr, /^error: the core sleeps for good .*no verdict/m);
});

test('crash (udf, stray bkpt), cycle limit, bad load address', () => {
  const udf = run(firmwareElf(new Thumb(CODE).movs(0, 1).udf(0)), ['--boot', 'vtor']);
  assert.equal(udf.status, 1);
  assert.match(udf.stderr, /^error: firmware crashed \(bkpt\/udf\) at pc=0x10000202: udf #0$/m);
  const bkpt = run(firmwareElf(new Thumb(CODE).bkpt(3)), ['--boot', 'vtor']);
  assert.equal(bkpt.status, 1);
  assert.match(bkpt.stderr, /^error: firmware crashed \(bkpt\/udf\) at pc=0x10000200: bkpt #3$/m);
  const loop = run(firmwareElf(new Thumb(CODE).label('l').b('l')), ['--boot', 'vtor', '--max-cycles', '100000']);
  assert.equal(loop.status, 124);
  assert.match(loop.stderr, /--max-cycles 100000 reached, no verdict/);
  const outside = run(buildElf([{ paddr: 0x30000000, data: new Uint8Array(4) }]));
  assert.equal(outside.status, 2);
  assert.match(outside.stderr, /^error: segment 0x30000000\.\.0x30000004 \(4 bytes\) is outside flash/m);
});

/** Reads DHCSR; C_DEBUGEN set: semihosting exit; clear: "PASS: no debugger" on UART0 and sleep. */
function debuggerProbe() {
  return new Thumb(CODE)
    .ldrLit(0, 'dhcsr').ldr(1, 0).movs(2, 1).tst(1, 2).beq('nodebug')
    .movs(0, 0x18).ldrLit(1, 'ok').bkpt(0xab)
    .label('nodebug').ldrLit(0, 'uart').adr(1, 'msg')
    .label('next').op(0x780a).op(0x2a00).beq('done').str(2, 0).adds(1, 1).b('next')
    .label('done').wfi().b('done')
    .align4().label('dhcsr').word(0xe000edf0).label('ok').word(0x20026).label('uart').word(UART0_DR)
    .label('msg').ascii('PASS: no debugger\n');
}

test('DHCSR.C_DEBUGEN: 1 by default (the runner is the debugger), 0 with --no-debugger', () => {
  const elf = firmwareElf(debuggerProbe());
  const attached = run(elf, ['--boot', 'vtor']);
  assert.equal(attached.status, 0, attached.stderr);
  assert.match(attached.stderr, /semihosting exit/);
  assert.doesNotMatch(attached.stderr, /warning/);
  const detached = run(elf, ['--boot', 'vtor', '--no-debugger']);
  assert.equal(detached.status, 0, detached.stderr);
  assert.equal(detached.stdout, 'PASS: no debugger\n');
  // semihosting with no debugger attached is a crash, as on hardware (HardFault)
  const sh = run(firmwareElf(semihostingProgram('x')), ['--boot', 'vtor', '--no-debugger']);
  assert.equal(sh.status, 1);
  assert.match(sh.stderr, /firmware crashed \(bkpt\/udf\) at pc=0x10000204: bkpt #171 \(semihosting call with no debugger/);
});

test('defmt over RTT: up-buffer 0 drained to --rtt-out, blocking mode set like probe-rs', () => {
  // control block at 0x20000000 (24-byte header + one up buffer), 64-byte buffer at 0x20000100.
  // The program writes the ID and buffer descriptor, then 100 bytes (0..99) one at a time,
  // advancing WrOff, and waits for the host whenever the buffer is full.
  const CB = 0x20000000;
  const p = new Thumb(CODE)
    .ldrLit(0, 'cb').adr(1, 'id').movs(2, 0)
    .label('copy').ldr(3, 1, 0).str(3, 0, 0).adds(0, 4).adds(1, 4).adds(2, 1).op(0x2a06).bne('copy') // 24 bytes: ID + counts
    .ldrLit(0, 'cb').ldrLit(1, 'buf').str(1, 0, 28).movs(1, 64).str(1, 0, 32).movs(1, 0).str(1, 0, 36).str(1, 0, 40).str(1, 0, 44)
    .movs(4, 0) // byte value / count
    .label('put').ldr(5, 0, 36) // WrOff
    .adds(6, 5, 0).op(0x1c6e) // adds r6, r5, #1
    .op(0x2e40).bne('nowrap').movs(6, 0) // cmp r6, #64
    .label('nowrap').label('full').ldr(7, 0, 40).op(0x42be).beq('full') // cmp r6, r7: wait while full
    .ldrLit(7, 'buf').op(0x557c) // strb r4, [r7, r5]
    .str(6, 0, 36).adds(4, 1).op(0x2c64).bne('put') // 100 bytes
    .movs(0, 0x18).ldrLit(1, 'ok').bkpt(0xab)
    .align4().label('cb').word(CB).label('buf').word(CB + 0x100).label('ok').word(0x20026)
    .label('id').ascii('SEGGER RTT\0\0\0\0\0').word(1).word(0);
  const elf = firmwareElf(p, { syms: { _SEGGER_RTT: CB } });
  const out = join(dir, 'rtt.bin');
  const r = run(elf, ['--boot', 'vtor', '--rtt-out', out]);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual([...readFileSync(out)], [...Array(100).keys()]);
});

/** In-process: SysTick (24-bit, RVR 0xFFFFFF) and TIMER against core.cycles between two reads. */
test('SysTick and TIMER agree with core.cycles', () => {
  const p = new Thumb(CODE)
    .ldrLit(0, 'syst').ldrLit(1, 'max').str(1, 0, 4).str(1, 0, 8).movs(1, 5).str(1, 0, 0) // RVR, CVR, CSR = ENABLE|CLKSOURCE
    .ldrLit(3, 'timer').ldrLit(2, 'iters')
    .label('A').ldr(4, 0, 8).ldr(6, 3, 0xc) // CVR, TIMELR
    .label('loop').subs(2, 1).bne('loop')
    .label('B').ldr(5, 0, 8).ldr(7, 3, 0xc)
    .label('end').b('end')
    .align4().label('syst').word(0xe000e010).label('max').word(0xffffff).label('timer').word(0x40054000)
    .label('iters').word(1_000_000);
  const code = p.bytes();
  const pico = new Pico({ segments: parseElf(firmwareElf(p)).segments }, { boot: 'vtor' });
  const { core } = pico.mcu;
  const cyclesAt = (label) => {
    while (core.PC !== p.labels[label]) pico.step();
    return core.cycles;
  };
  assert.ok(code.length > 0);
  const a = cyclesAt('A');
  const b = cyclesAt('B');
  cyclesAt('end');
  const elapsed = b - a;
  // LDR from the PPB 2, LDR from APB 1 + 3; the loop: SUBS 1, BNE 2 taken (1 on the way out)
  assert.equal(elapsed, 2 + 4 + 3 * 1_000_000 - 1);
  const r = core.registers;
  assert.equal((r[4] - r[5] + 0x1000000) % 0x1000000, elapsed, 'SysTick counted core cycles');
  const micros = (r[7] - r[6]) >>> 0;
  assert.ok(Math.abs(micros - (elapsed * 1e6) / pico.mcu.clkSys) <= 1, `TIMER ${micros} us vs ${(elapsed * 1e6) / pico.mcu.clkSys}`);
});

test('SysTick wrap interrupt every RVR + 1 cycles (hardware period), no spurious wrap on CVR write', () => {
  const RVR = 999;
  const p = new Thumb(CODE)
    .movs(7, 0)
    .ldrLit(0, 'syst').ldrLit(1, 'rvr').str(1, 0, 4).str(1, 0, 8).movs(1, 7).str(1, 0, 0) // TICKINT
    .label('spin').b('spin')
    .label('handler').adds(7, 1).bxLr()
    .align4().label('syst').word(0xe000e010).label('rvr').word(RVR);
  p.bytes();
  // vector table with the SysTick handler (exception 15)
  const vt = new Uint8Array(64);
  const dv = new DataView(vt.buffer);
  dv.setUint32(0, 0x20040000, true);
  dv.setUint32(4, CODE | 1, true);
  dv.setUint32(60, p.labels.handler | 1, true);
  const elf = buildElf([{ paddr: 0x10000100, data: vt }, { paddr: CODE, data: p.bytes() }]);
  const pico = new Pico({ segments: parseElf(elf).segments }, { boot: 'vtor' });
  const { core } = pico.mcu;
  const entries = [];
  for (let steps = 0; entries.length < 21; steps++) {
    assert.ok(steps < 1e6, `only ${entries.length} SysTick exceptions`);
    pico.step();
    // rp2040js leaves the vector's Thumb bit in PC on exception entry: compare without it
    if ((core.PC & ~1) === p.labels.handler + 2 && core.registers[7] === entries.length + 1) entries.push(core.cycles - 1);
  }
  const span = entries[20] - entries[0];
  assert.ok(Math.abs(span - 20 * (RVR + 1)) <= 2, `20 periods took ${span} cycles, hardware ${20 * (RVR + 1)}`);
  // the first wrap comes RVR + 1 cycles after the CVR write (+ the rest of the set-up), not at once
  assert.ok(entries[0] >= RVR, `first wrap after ${entries[0]} cycles`);
});
