"""Check the PyTorch M² (m2_torch.py) against the reference fixtures in tests/fixtures/:
encoder outputs, teacher-forcing log-probs, decoder layers, beam-search tokens and captions."""
import json
import pathlib
import sys

import numpy as np
import torch
from safetensors.torch import load_file

from m2_torch import M2, M2Config, beam_search, caption_eval, caption_raw, load_reference

ROOT = pathlib.Path(__file__).resolve().parents[3]


def check(name):
    d = ROOT / "tests" / "fixtures" / name
    e = json.load(open(d / "expected.json"))
    hp, sp = e["hyper"], e["specials"]
    sd = load_file(str(d / "model.safetensors"))
    c = M2Config(d_in=hp["d_in"], d_model=hp["d_model"], h=hp["h"], d_k=hp["d_k"], d_v=hp["d_v"],
                 d_ff=hp["d_ff"], m=hp["m"], vocab=hp["vocab_size"], pos_rows=hp["max_len"] + 1,
                 pad=sp["pad"], unk=sp["unk"], bos=sp["bos"], eos=sp["eos"],
                 enc_pad_value=float(e["encoder_padding_idx"]))
    model = M2(c).eval()
    load_reference(model, sd)
    itos = json.load(open(d / "vocab.json"))
    feats = torch.from_numpy(np.load(d / "features.npy"))
    with torch.no_grad():
        enc, mask, p = model.encoder(feats)
        tf = torch.from_numpy(np.load(d / "tf_tokens.npy"))
        lp, layers = model.decoder(tf, enc, mask, return_layers=True)
    res = {
        "enc_proj": float((p - torch.from_numpy(np.load(d / "enc_proj.npy"))).abs().max()),
        "enc_outputs": float((enc - torch.from_numpy(np.load(d / "enc_outputs.npy"))).abs().max()),
        "enc_mask_equal": bool((mask[:, 0, 0].numpy() == np.load(d / "enc_mask.npy")).all()),
        "tf_logprobs": float((lp - torch.from_numpy(np.load(d / "tf_logprobs.npy"))).abs().max()),
        "tf_dec_layers": float((layers - torch.from_numpy(np.load(d / "tf_dec_layers.npy"))).abs().max()),
    }
    toks, tlp, all_t, all_s = beam_search(model, feats, 5, 20)
    res["bs_tokens_equal"] = bool((toks.numpy() == np.load(d / "bs_tokens.npy")).all())
    res["bs_all_tokens_equal"] = bool((all_t.numpy() == np.load(d / "bs_all_tokens.npy")).all())
    res["bs_scores"] = float(np.abs(all_s.numpy() - np.load(d / "bs_all_scores.npy")).max())
    res["bs_token_logprobs"] = float(np.abs(tlp.numpy() - np.load(d / "bs_token_logprobs.npy")).max())
    res["captions_raw_equal"] = [caption_raw(t, itos) for t in toks] == e["bs_captions"]
    res["captions_eval_equal"] = [caption_eval(t, itos) for t in toks] == e["bs_captions_eval"]
    ok = (res["enc_outputs"] <= 1e-4 and res["tf_logprobs"] <= 2e-4 and res["enc_mask_equal"]
          and res["bs_tokens_equal"] and res["bs_all_tokens_equal"] and res["captions_raw_equal"]
          and res["captions_eval_equal"] and res["bs_scores"] <= 1e-3)
    return ok, res


if __name__ == "__main__":
    torch.set_num_threads(2)
    all_ok = True
    for name in ["tiny-s0", "tiny-s2-masked", "small-s3"]:
        ok, res = check(name)
        all_ok &= ok
        print(("PASS " if ok else "FAIL ") + name, json.dumps(res))
    sys.exit(0 if all_ok else 1)
