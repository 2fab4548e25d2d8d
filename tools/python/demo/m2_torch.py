"""A PyTorch M² written from the specification docs/SPEC.md (the reference's test-time
behaviour).

state_dict names are exactly the reference's (docs/SPEC.md §3.1), without the empty `running_*`
state buffers (m2-pack ignores them; `load_reference` drops them). `validate_fixtures.py` proves
names and math against the reference fixtures in tests/fixtures/.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class M2Config:
    d_in: int = 72
    d_model: int = 64
    h: int = 4
    d_k: int = 16
    d_v: int = 16
    d_ff: int = 256
    m: int = 16
    vocab: int = 64
    pos_rows: int = 21  # decoder max_len + 1
    pad: int = 1
    unk: int = 0
    bos: int = 2
    eos: int = 3
    enc_pad_value: float = 0.0  # encoder "padding_idx" (docs/SPEC.md §5.2, Q3)

    def to_dict(self):
        return asdict(self)


class Attention(nn.Module):
    """ScaledDotProductAttention(Memory): names fc_q, fc_k, fc_v, fc_o (+ m_k, m_v)."""

    def __init__(self, c: M2Config, memory: bool):
        super().__init__()
        d = c.d_model
        self.c = c
        self.fc_q = nn.Linear(d, c.h * c.d_k)
        self.fc_k = nn.Linear(d, c.h * c.d_k)
        self.fc_v = nn.Linear(d, c.h * c.d_v)
        self.fc_o = nn.Linear(c.h * c.d_v, d)
        self.memory = memory
        if memory:
            self.m_k = nn.Parameter(torch.empty(1, c.m, c.h * c.d_k))
            self.m_v = nn.Parameter(torch.empty(1, c.m, c.h * c.d_v))

    def forward(self, q_in, kv_in, mask):
        """q_in [B,nq,d], kv_in [B,nk,d], mask bool broadcastable to [B,h,nq,nk] (True = masked)."""
        c = self.c
        B, nq, _ = q_in.shape
        nk = kv_in.shape[1]
        q = self.fc_q(q_in).view(B, nq, c.h, c.d_k).transpose(1, 2)
        k = self.fc_k(kv_in)
        v = self.fc_v(kv_in)
        if self.memory:
            mk = math.sqrt(c.d_k) * self.m_k.expand(B, c.m, c.h * c.d_k)
            mv = math.sqrt(c.m) * self.m_v.expand(B, c.m, c.h * c.d_v)
            k = torch.cat([k, mk], 1)
            v = torch.cat([v, mv], 1)
        nkk = k.shape[1]
        k = k.view(B, nkk, c.h, c.d_k).permute(0, 2, 3, 1)
        v = v.view(B, nkk, c.h, c.d_v).transpose(1, 2)
        att = torch.matmul(q, k) / math.sqrt(c.d_k)
        if mask is not None:
            if self.memory:
                att = torch.cat([att[..., :nk].masked_fill(mask, float("-inf")), att[..., nk:]], -1)
            else:
                att = att.masked_fill(mask, float("-inf"))
        att = torch.softmax(att, -1)
        o = torch.matmul(att, v).transpose(1, 2).reshape(B, nq, c.h * c.d_v)
        return self.fc_o(o)


class MHA(nn.Module):
    """MultiHeadAttention: `attention` + post-norm `layer_norm` with residual on the query."""

    def __init__(self, c: M2Config, memory: bool = False):
        super().__init__()
        self.attention = Attention(c, memory)
        self.layer_norm = nn.LayerNorm(c.d_model)
        self.dropout = nn.Dropout(0.1)

    def forward(self, q_in, kv_in, mask):
        return self.layer_norm(q_in + self.dropout(self.attention(q_in, kv_in, mask)))


class PWFF(nn.Module):
    def __init__(self, c: M2Config):
        super().__init__()
        self.fc1 = nn.Linear(c.d_model, c.d_ff)
        self.fc2 = nn.Linear(c.d_ff, c.d_model)
        self.layer_norm = nn.LayerNorm(c.d_model)
        self.dropout = nn.Dropout(0.1)
        self.dropout_2 = nn.Dropout(0.1)

    def forward(self, x):
        out = self.fc2(self.dropout_2(F.relu(self.fc1(x))))
        return self.layer_norm(x + self.dropout(out))


class EncoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.mhatt = MHA(c, memory=True)
        self.pwff = PWFF(c)

    def forward(self, x, mask):
        return self.pwff(self.mhatt(x, x, mask))


class Encoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.fc = nn.Linear(c.d_in, c.d_model)
        self.layer_norm = nn.LayerNorm(c.d_model)
        self.dropout = nn.Dropout(0.1)
        self.layers = nn.ModuleList([EncoderLayer(c) for _ in range(3)])

    def forward(self, x):
        """x [B,R,d_in] -> (enc [B,3,R,d], mask [B,1,1,R] bool)."""
        p = self.layer_norm(self.dropout(F.relu(self.fc(x))))
        mask = (p.sum(-1) == self.c.enc_pad_value)[:, None, None, :]
        outs = []
        e = p
        for l in self.layers:
            e = l(e, mask)
            outs.append(e)
        return torch.stack(outs, 1), mask, p


class DecoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_att = MHA(c)
        self.enc_att = MHA(c)
        self.pwff = PWFF(c)
        d = c.d_model
        self.fc_alpha1 = nn.Linear(2 * d, d)
        self.fc_alpha2 = nn.Linear(2 * d, d)
        self.fc_alpha3 = nn.Linear(2 * d, d)

    def forward(self, x, enc, self_mask, enc_mask, q_ok):
        s = self.self_att(x, x, self_mask) * q_ok
        g = 0
        for i, fa in enumerate((self.fc_alpha1, self.fc_alpha2, self.fc_alpha3)):
            ci = self.enc_att(s, enc[:, i], enc_mask) * q_ok
            a = torch.sigmoid(fa(torch.cat([s, ci], -1)))
            g = g + a * ci
        g = g / math.sqrt(3)
        g = g * q_ok
        return self.pwff(g) * q_ok


class Decoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.word_emb = nn.Embedding(c.vocab, c.d_model, padding_idx=c.pad)
        self.pos_emb = nn.Embedding(c.pos_rows, c.d_model)
        self.pos_emb.weight.requires_grad_(False)  # frozen, as the reference (docs/SPEC.md Q1)
        self.layers = nn.ModuleList([DecoderLayer(c) for _ in range(3)])
        self.fc = nn.Linear(c.d_model, c.vocab, bias=False)

    def forward(self, tokens, enc, enc_mask, return_layers=False):
        """tokens [B,T] -> log-probs [B,T,V] (teacher forcing; = incremental decoding)."""
        c = self.c
        B, T = tokens.shape
        is_pad = tokens == c.pad
        q_ok = (~is_pad).float()[..., None]
        causal = torch.triu(torch.ones(T, T, dtype=torch.bool, device=tokens.device), 1)
        self_mask = causal[None, None] | is_pad[:, None, None, :]
        pos = torch.arange(1, T + 1, device=tokens.device)[None].expand(B, T).masked_fill(is_pad, 0)
        x = self.word_emb(tokens) + self.pos_emb(pos)
        layers = []
        for l in self.layers:
            x = l(x, enc, self_mask, enc_mask, q_ok)
            layers.append(x)
        lp = F.log_softmax(self.fc(x), -1)
        return (lp, torch.stack(layers, 1)) if return_layers else lp


class M2(nn.Module):
    def __init__(self, c: M2Config):
        super().__init__()
        self.c = c
        self.encoder = Encoder(c)
        self.decoder = Decoder(c)
        self.init_weights()

    def init_weights(self):
        # the reference: Xavier-uniform on every >=2-dim parameter, frozen pos_emb included
        # (docs/SPEC.md Q1)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, feats, tokens):
        enc, mask, _ = self.encoder(feats)
        return self.decoder(tokens, enc, mask)


def load_reference(model: M2, sd: dict):
    """Load a reference state_dict (ignoring its running_* state buffers); strict otherwise."""
    sd = {k: v for k, v in sd.items() if ".running_" not in k and not k.startswith("decoder.running_")}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise KeyError(f"missing {missing}, unexpected {unexpected}")


@torch.no_grad()
def beam_search(model: M2, feats, beam: int = 5, max_len: int = 20):
    """The reference beam search (docs/SPEC.md §8), batched over independent images.

    Returns (tokens [B,max_len] i64, token_logprobs [B,max_len], all_tokens [B,beam,max_len],
    all_scores [B,beam]) — best beam first.
    """
    c = model.c
    B = feats.shape[0]
    enc, mask, _ = model.encoder(feats)
    V = c.vocab
    encb = enc.repeat_interleave(beam, 0)
    maskb = mask.repeat_interleave(beam, 0)
    # step 0
    bos = torch.full((B, 1), c.bos, dtype=torch.long)
    lp0 = model.decoder(bos, enc, mask)[:, -1]  # [B,V]
    s0, w0 = torch.sort(lp0, dim=-1, descending=True, stable=True)
    scores = s0[:, :beam].clone()  # [B,beam]
    seq = w0[:, :beam, None].clone()  # [B,beam,1]
    tok_lp = s0[:, :beam, None].clone()
    finished = seq[..., 0] == c.eos
    for t in range(1, max_len):
        inp = torch.cat([bos.repeat_interleave(beam, 0), seq.reshape(B * beam, t)], 1)
        lp = model.decoder(inp, encb, maskb)[:, -1].reshape(B, beam, V)
        cand = scores[..., None] + lp
        frozen = torch.full_like(cand, -999.0)
        frozen[..., 0] = scores
        cand = torch.where(finished[..., None], frozen, cand)
        flat = cand.reshape(B, beam * V)
        sv, si = torch.sort(flat, dim=-1, descending=True, stable=True)
        sv, si = sv[:, :beam], si[:, :beam]
        parent, word = si // V, si % V
        chosen_lp = torch.gather(lp, 1, parent[..., None].expand(B, beam, V)).gather(2, word[..., None])[..., 0]
        was_fin = torch.gather(finished, 1, parent)
        chosen_lp = torch.where(was_fin, torch.zeros_like(chosen_lp), chosen_lp)
        seq = torch.cat([torch.gather(seq, 1, parent[..., None].expand(B, beam, t)), word[..., None]], 2)
        tok_lp = torch.cat([torch.gather(tok_lp, 1, parent[..., None].expand(B, beam, t)),
                            chosen_lp[..., None]], 2)
        finished = was_fin | (word == c.eos)
        scores = sv
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices
    all_tokens = torch.gather(seq, 1, order[..., None].expand_as(seq))
    all_lp = torch.gather(tok_lp, 1, order[..., None].expand_as(tok_lp))
    all_scores = torch.gather(scores, 1, order)
    return all_tokens[:, 0], all_lp[:, 0], all_tokens, all_scores


def caption_raw(ids, itos):
    words = []
    for i in ids:
        w = itos[int(i)]
        if w == "<eos>":
            break
        words.append(w)
    return " ".join(words)


def caption_eval(ids, itos):
    """docs/SPEC.md §11: up to the first <eos>, join, collapse runs of identical words, strip."""
    import itertools
    words = []
    for i in ids:
        w = itos[int(i)]
        if w == "<eos>":
            break
        words.append(w)
    return " ".join(k for k, _ in itertools.groupby(words)).strip()
