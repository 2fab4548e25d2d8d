/* h7count: Unicorn UC_HOOK_BLOCK callback that counts executed Thumb instructions.
 *
 * h7sim.py compiles this with the system C compiler (`cc -O2 -shared -fPIC`) at start-up and
 * registers `h7_block` through uc_hook_add; a Python block hook does the same work ~30x slower.
 * For each translated block Unicorn is about to run, the block's bytes are read from the host
 * buffers that back the guest memories (uc_mem_map_ptr) and its instructions counted: a Thumb
 * halfword whose top five bits are 0b11101, 0b11110 or 0b11111 starts a 32-bit instruction.
 * Every `slice` blocks the hook asks Unicorn to stop, so Python can drain the RTT buffer and
 * check its limits, then resume. */
#include <stdint.h>

typedef int (*uc_emu_stop_fn)(void *uc);

struct h7_region {
    uint64_t base, size;
    const uint8_t *host;
};

struct h7_counter {
    uint64_t insns;          /* instructions in the blocks entered so far */
    uint64_t blocks;         /* blocks entered so far */
    uint64_t slice;          /* stop every `slice` blocks (0: never) */
    uint64_t next_stop;      /* block count at which to stop next */
    uc_emu_stop_fn emu_stop; /* uc_emu_stop from the loaded libunicorn */
    uint32_t stopped;        /* set when this hook asked Unicorn to stop */
    uint32_t nregions;
    struct h7_region regions[16];
};

void h7_block(void *uc, uint64_t addr, uint32_t size, struct h7_counter *c) {
    const uint8_t *p = 0;
    for (uint32_t i = 0; i < c->nregions; i++) {
        if (addr - c->regions[i].base < c->regions[i].size) {
            p = c->regions[i].host + (addr - c->regions[i].base);
            break;
        }
    }
    uint64_t n = 0;
    if (p) {
        for (uint32_t k = 0; k + 1 < size;) {
            n++;
            k += (p[k + 1] >> 3) >= 0x1D ? 4 : 2;
        }
    } else {
        n = size / 2; /* code outside the host-backed memories: not expected */
    }
    if (c->slice && c->blocks + 1 >= c->next_stop) {
        /* Unicorn leaves this block unexecuted when the hook stops it; the block is entered
         * (and counted) again when the emulation resumes at its address. */
        c->next_stop = c->blocks + 1 + c->slice;
        c->stopped = 1;
        c->emu_stop(uc);
        return;
    }
    c->insns += n;
    c->blocks++;
}
