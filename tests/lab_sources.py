"""What learners write for each lab: one right answer, written another way than minitx's, and
typical wrong ones, each with words its message must contain. Shared by the labs' tests, the
command line's and the Build it page's."""

RIGHT = {
    "bpe_merge": '''
from collections import Counter

def bpe_merge(words):
    counts = Counter()
    for word, n in words.items():
        for i in range(len(word) - 1):
            counts[word[i], word[i + 1]] += n
    best = max(counts, key=counts.get)
    out = {}
    for word, n in words.items():
        symbols, i = [], 0
        while i < len(word):
            if word[i:i + 2] == best:
                symbols.append(word[i] + word[i + 1]); i += 2
            else:
                symbols.append(word[i]); i += 1
        out[tuple(symbols)] = out.get(tuple(symbols), 0) + n
    return out, best
''',
    "sinusoidal": '''
import math
import torch

def sinusoidal(max_len, d_model):
    pe = torch.zeros(max_len, d_model)
    pos = torch.arange(max_len).unsqueeze(1).float()
    div = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)
    return pe
''',
    "rope": '''
import torch

def apply_rope(x, start):
    B, H, T, D = x.shape
    inv = 1.0 / (10000 ** (torch.arange(0, D, 2).float() / D))
    t = torch.arange(start, start + T).float()
    ang = torch.einsum("t,f->tf", t, inv)
    c, s = ang.cos(), ang.sin()
    even, odd = x[..., ::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., ::2] = even * c - odd * s
    out[..., 1::2] = even * s + odd * c
    return out
''',
    "attention": '''
import math
import torch

def attention(q, k, v, mask=None):
    d = q.shape[-1]
    scores = torch.einsum("bhtd,bhsd->bhts", q, k) / math.sqrt(d)
    if mask is not None:
        scores = scores.masked_fill(mask == False, float("-inf"))
    w = torch.softmax(scores, dim=-1)
    return torch.einsum("bhts,bhsd->bhtd", w, v), w
''',
    "repeat_kv": '''
import torch

def repeat_kv(x, n_rep):
    return torch.repeat_interleave(x, n_rep, dim=1)
''',
    "rms_norm": '''
import torch

def rms_norm(x, weight, eps):
    return weight * x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps)
''',
    "block": '''
def block(x, attention_norm, attention, ffn_norm, feed_forward):
    h = x + attention(attention_norm(x))
    return h + feed_forward(ffn_norm(h))
''',
    "causal_mask": '''
import torch

def causal_mask(T, S):
    query_position = torch.arange(S - T, S)[:, None]
    key_position = torch.arange(S)[None, :]
    return key_position <= query_position
''',
    "kv_step": '''
import math
import torch

def kv_step(cache_k, cache_v, k, v, q, position):
    cache_k[:, :, position] = k[:, :, 0]
    cache_v[:, :, position] = v[:, :, 0]
    keys = cache_k[:, :, :position + 1].repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    values = cache_v[:, :, :position + 1].repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    w = torch.softmax(q @ keys.transpose(2, 3) / math.sqrt(q.shape[-1]), dim=-1)
    return w @ values
''',
    "top_p": '''
import torch

def top_p_filter(logits, p):
    probs = torch.softmax(logits, dim=-1)
    sorted_probs, idx = torch.sort(probs, dim=-1, descending=True)
    before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
    remove = before >= p
    remove[..., 0] = False
    mask = torch.zeros_like(remove).scatter(-1, idx, remove)
    return torch.where(mask, torch.full_like(logits, float("-inf")), logits)
''',
    "moe_route": '''
import torch

def moe_route(probs, k):
    N, E = probs.shape
    top, idx = torch.topk(probs, k)
    weights = top / top.sum(dim=1, keepdim=True)
    counts = torch.zeros(E)
    for e in idx.flatten().tolist():
        counts[e] += 1
    f = counts / (N * k)
    P = probs.mean(dim=0)
    return weights, idx, E * torch.sum(f * P)
''',
    "bits_per_char": '''
import math

def bits_per_char(nats_per_token, n_tokens, n_chars):
    return nats_per_token * n_tokens / n_chars / math.log(2)
''',
    "quantize_block": '''
import torch

def quantize_block(w):
    out_d, out_m, out_packed, out_values = [], [], [], []
    for block in w:                                   # one block at a time, as the file stores them
        low, high = block.min(), block.max()
        d = (high - low) / 15
        inverse = 1 / d if d != 0 else torch.tensor(0.0)
        q = torch.clamp(torch.trunc((block - low) * inverse + 0.5), 0, 15).to(torch.uint8)
        out_packed.append(q[:16] | (q[16:] << 4))
        d16, m16 = d.to(torch.float16), low.to(torch.float16)
        out_d.append(d16)
        out_m.append(m16)
        out_values.append(q.float() * d16.float() + m16.float())
    return torch.stack(out_d), torch.stack(out_m), torch.stack(out_packed), torch.stack(out_values)
''',
}

# lab -> [(what the learner did, their file, words the message must contain), ...]
WRONG = {
    "bpe_merge": [
        ("counted a pair once per word, not once per place it stands", '''
def bpe_merge(words):
    pairs = {}
    for word, n in words.items():
        for pair in dict.fromkeys(zip(word, word[1:])):
            pairs[pair] = pairs.get(pair, 0) + n
    best = max(pairs, key=pairs.get)
    out = {}
    for word, n in words.items():
        new, i = [], 0
        while i < len(word):
            if word[i:i + 2] == best:
                new.append(word[i] + word[i + 1]); i += 2
            else:
                new.append(word[i]); i += 1
        out[tuple(new)] = out.get(tuple(new), 0) + n
    return out, best
''', "once for each place it stands"),
        ("two words merged into one: one count overwrote the other", '''
def bpe_merge(words):
    pairs = {}
    for word, n in words.items():
        for a, b in zip(word, word[1:]):
            pairs[(a, b)] = pairs.get((a, b), 0) + n
    best = max(pairs, key=pairs.get)
    out = {}
    for word, n in words.items():
        new, i = [], 0
        while i < len(word):
            if word[i:i + 2] == best:
                new.append(word[i] + word[i + 1]); i += 2
            else:
                new.append(word[i]); i += 1
        out[tuple(new)] = n
    return out, best
''', "add their counts"),
        ("merged by replacing text, across a boundary between symbols", '''
def bpe_merge(words):
    pairs = {}
    for word, n in words.items():
        for a, b in zip(word, word[1:]):
            pairs[(a, b)] = pairs.get((a, b), 0) + n
    best = max(pairs, key=pairs.get)
    out = {}
    for word, n in words.items():
        new = tuple(" ".join(word).replace(" ".join(best), "".join(best)).split(" "))
        out[new] = out.get(new, 0) + n
    return out, best
''', "across the boundary"),
        ("counted each pair once per word", '''
def bpe_merge(words):
    pairs = {}
    for word in words:
        for a, b in zip(word, word[1:]):
            pairs[(a, b)] = pairs.get((a, b), 0) + 1
    best = max(pairs, key=pairs.get)
    out = {}
    for word, n in words.items():
        new, i = [], 0
        while i < len(word):
            if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                new.append(word[i] + word[i + 1]); i += 2
            else:
                new.append(word[i]); i += 1
        out[tuple(new)] = n
    return out, best
''', "counted once per word"),
        ("broke ties with the largest pair", '''
def bpe_merge(words):
    pairs = {}
    for word, n in words.items():
        for a, b in zip(word, word[1:]):
            pairs[(a, b)] = pairs.get((a, b), 0) + n
    best = max(pairs, key=lambda pair: (pairs[pair], pair))
    out = {}
    for word, n in words.items():
        s = " ".join(word).replace(" ".join(best), "".join(best))
        out[tuple(s.split(" "))] = n
    return out, best
''', "tie broken another way"),
        ("merged only the first place", '''
def bpe_merge(words):
    pairs = {}
    for word, n in words.items():
        for a, b in zip(word, word[1:]):
            pairs[(a, b)] = pairs.get((a, b), 0) + n
    best = max(pairs, key=pairs.get)
    out = {}
    for word, n in words.items():
        w = list(word)
        for i in range(len(w) - 1):
            if (w[i], w[i + 1]) == best:
                w[i:i + 2] = [w[i] + w[i + 1]]
                break
        out[tuple(w)] = n
    return out, best
''', "Only the first place"),
        ("changed the dict it was given", '''
def bpe_merge(words):
    pairs = {}
    for word, n in words.items():
        for a, b in zip(word, word[1:]):
            pairs[(a, b)] = pairs.get((a, b), 0) + n
    best = max(pairs, key=pairs.get)
    for word in list(words):
        n = words.pop(word)
        new, i = [], 0
        while i < len(word):
            if word[i:i + 2] == best:
                new.append(word[i] + word[i + 1]); i += 2
            else:
                new.append(word[i]); i += 1
        words[tuple(new)] = words.get(tuple(new), 0) + n
    return words, best
''', "changed its input `words` in place"),
    ],
    "sinusoidal": [
        ("cosine on the even dimensions", '''
import torch

def sinusoidal(max_len, d_model):
    pos = torch.arange(max_len)[:, None].float()
    freq = 10000 ** (-torch.arange(0, d_model, 2).float() / d_model)
    pe = torch.zeros(max_len, d_model)
    pe[:, 0::2] = torch.cos(pos * freq)
    pe[:, 1::2] = torch.sin(pos * freq)
    return pe
''', "Sine and cosine are swapped"),
        ("sines then cosines, in halves", '''
import torch

def sinusoidal(max_len, d_model):
    pos = torch.arange(max_len)[:, None].float()
    freq = 10000 ** (-torch.arange(0, d_model, 2).float() / d_model)
    return torch.cat([torch.sin(pos * freq), torch.cos(pos * freq)], dim=-1)
''', "first half"),
        ("i for 2i in the exponent", '''
import torch

def sinusoidal(max_len, d_model):
    pos = torch.arange(max_len)[:, None].float()
    freq = 1.0 / 10000 ** (torch.arange(d_model // 2).float() / d_model)
    pe = torch.zeros(max_len, d_model)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe
''', "uses i where the formula has 2i"),
        ("a float64 table", '''
import numpy as np
import torch

def sinusoidal(max_len, d_model):
    pos = np.arange(max_len)[:, None]
    freq = 10000 ** (-np.arange(0, d_model, 2) / d_model)
    pe = np.zeros((max_len, d_model))
    pe[:, 0::2], pe[:, 1::2] = np.sin(pos * freq), np.cos(pos * freq)
    return torch.from_numpy(pe)
''', "dtype float32"),
        ("the cosine at twice the angle: no mistake the lab names", '''
import math
import torch

def sinusoidal(max_len, d_model):
    pos = torch.arange(max_len).float()[:, None]
    div = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
    pe = torch.zeros(max_len, d_model)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div * 2)
    return pe
''', "only odd dimensions of D"),
    ],
    "rope": [
        ("ignored start", '''
import torch

def apply_rope(x, start):
    B, H, T, D = x.shape
    theta = 10000 ** (-torch.arange(0, D, 2).float() / D)
    angle = torch.arange(T).float()[:, None] * theta
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * angle.cos() - b * angle.sin(), a * angle.sin() + b * angle.cos()], -1).flatten(-2)
''', "ignored `start`"),
        ("rotate_half, as in Hugging Face's Llama", '''
import torch

def apply_rope(x, start):
    D = x.shape[-1]
    theta = 10000 ** (-torch.arange(0, D, 2).float() / D)
    angle = torch.arange(start, start + x.shape[-2]).float()[:, None] * theta
    cos, sin = torch.cat([angle.cos()] * 2, -1), torch.cat([angle.sin()] * 2, -1)
    x1, x2 = x[..., : D // 2], x[..., D // 2:]
    rotated = torch.cat([-x2, x1], dim=-1)
    return x * cos + rotated * sin
''', "i + Dh/2"),
        ("turned the wrong way", '''
import torch

def apply_rope(x, start):
    D = x.shape[-1]
    theta = 10000 ** (-torch.arange(0, D, 2).float() / D)
    angle = torch.arange(start, start + x.shape[-2]).float()[:, None] * theta
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * angle.cos() + b * angle.sin(), b * angle.cos() - a * angle.sin()], -1).flatten(-2)
''', "wrong way"),
        ("rotated x in place", '''
import torch

def apply_rope(x, start):
    D = x.shape[-1]
    theta = 10000 ** (-torch.arange(0, D, 2).float() / D)
    angle = torch.arange(start, start + x.shape[-2]).float()[:, None] * theta
    a, b = x[..., 0::2].clone(), x[..., 1::2].clone()
    x[..., 0::2] = a * angle.cos() - b * angle.sin()
    x[..., 1::2] = a * angle.sin() + b * angle.cos()
    return x
''', "changed its input `x` in place"),
        ("a sign slip in the second of each pair: no mistake the lab names", '''
import torch

def apply_rope(x, start):
    T, D = x.shape[-2:]
    theta = 10000 ** (-torch.arange(0, D, 2).float() / D)
    ang = torch.arange(start, start + T).float()[:, None] * theta
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * ang.cos() - b * ang.sin(), a * ang.sin() - b * ang.cos()], -1).flatten(-2)
''', "only odd dimensions of Dh"),
    ],
    "attention": [
        ("no 1/sqrt(Dh)", '''
import torch

def attention(q, k, v, mask=None):
    scores = torch.matmul(q, k.transpose(-1, -2))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return torch.matmul(weights, v), weights
''', "No 1/√Dh"),
        ("the mask multiplied by -inf", '''
import math
import torch

def attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores + (1 - mask.float()) * float("-inf")
    weights = scores.softmax(-1)
    return weights @ v, weights
''', "0 × -inf"),
        ("True taken to mean hidden", '''
import math
import torch

def attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(mask, -1e9)
    weights = scores.softmax(-1)
    return weights @ v, weights
''', "wrong way round"),
        ("exp without taking the max off", '''
import math
import torch

def attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    e = torch.exp(scores)
    if mask is not None:
        e = e * mask
    weights = e / e.sum(-1, keepdim=True)
    return weights @ v, weights
''', "exp overflowed"),
        ("scaled q in place", '''
import math
import torch

def attention(q, k, v, mask=None):
    q /= math.sqrt(q.size(-1))
    scores = q @ k.transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(-1)
    return weights @ v, weights
''', "changed its input `q` in place"),
        ("returned the output alone", '''
import math

def attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1) @ v
''', "should return 2 things"),
        ("k transposed with .T", '''
import math

def attention(q, k, v, mask=None):
    scores = q @ k.mT.mT / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(-1)
    return weights @ v, weights
''', "RuntimeError"),
    ],
    "repeat_kv": [
        ("tiled the heads with repeat", '''
def repeat_kv(x, n_rep):
    return x.repeat(1, n_rep, 1, 1)
''', "wrong order"),
        ("repeated along the tokens", '''
import torch

def repeat_kv(x, n_rep):
    return torch.repeat_interleave(x, n_rep, dim=2)
''', "in another arrangement"),
        ("expanded a new axis in front of G", '''
def repeat_kv(x, n_rep):
    B, G, S, Dh = x.shape
    return x[:, None].expand(B, n_rep, G, S, Dh).reshape(B, n_rep * G, S, Dh)
''', "wrong order"),
        ("forgot to repeat", '''
def repeat_kv(x, n_rep):
    return x
''', "reads as (B, G, S, Dh)"),
    ],
    "rms_norm": [
        ("eps outside the root", '''
import torch

def rms_norm(x, weight, eps):
    return x / (x.pow(2).mean(-1, keepdim=True).sqrt() + eps) * weight
''', "outside the square root"),
        ("LayerNorm without a bias", '''
import torch

def rms_norm(x, weight, eps):
    x = x - x.mean(-1, keepdim=True)
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight
''', "LayerNorm"),
        ("no eps at all", '''
import torch

def rms_norm(x, weight, eps):
    return x / torch.sqrt(torch.mean(x ** 2, dim=-1, keepdim=True)) * weight
''', "vector of zeros"),
        ("forgot the gain", '''
import torch

def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
''', "gain `weight` was not applied"),
    ],
    "block": [
        ("post-norm", '''
def block(x, attention_norm, attention, ffn_norm, feed_forward):
    x = attention_norm(x + attention(x))
    return ffn_norm(x + feed_forward(x))
''', "post-norm"),
        ("no residual around attention", '''
def block(x, attention_norm, attention, ffn_norm, feed_forward):
    h = attention(attention_norm(x))
    return h + feed_forward(ffn_norm(h))
''', "replaced the residual stream"),
        ("normalised the stream itself", '''
def block(x, attention_norm, attention, ffn_norm, feed_forward):
    x = attention_norm(x)
    x = x + attention(x)
    x = ffn_norm(x)
    return x + feed_forward(x)
''', "normalised x replaced the residual stream"),
        ("both branches from x", '''
def block(x, attention_norm, attention, ffn_norm, feed_forward):
    a = attention(attention_norm(x))
    f = feed_forward(ffn_norm(x))
    return x + a + f
''', "parallel block"),
    ],
    "causal_mask": [
        ("tril without the offset", '''
import torch

def causal_mask(T, S):
    return torch.tril(torch.ones(T, S)).bool()
''', "wrong place when T < S"),
        ("triu: True on the future", '''
import torch

def causal_mask(T, S):
    return torch.triu(torch.ones(T, S, dtype=torch.bool), diagonal=S - T + 1)
''', "swapped"),
        ("cannot see itself", '''
import torch

def causal_mask(T, S):
    return torch.ones(T, S, dtype=torch.bool).tril(S - T - 1)
''', "must see itself"),
        ("a float mask", '''
import torch

def causal_mask(T, S):
    return torch.ones(T, S).tril(S - T)
''', "dtype bool"),
    ],
    "kv_step": [
        ("never wrote the cache", '''
import math
import torch

def kv_step(cache_k, cache_v, k, v, q, position):
    keys = torch.cat([cache_k[:, :, :position], k], dim=2).repeat_interleave(q.shape[1] // k.shape[1], 1)
    values = torch.cat([cache_v[:, :, :position], v], dim=2).repeat_interleave(q.shape[1] // k.shape[1], 1)
    w = (q @ keys.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1)
    return w @ values
''', "cache was not written"),
        ("attended over the whole cache", '''
import math
import torch

def kv_step(cache_k, cache_v, k, v, q, position):
    cache_k[:, :, position] = k[:, :, 0]
    cache_v[:, :, position] = v[:, :, 0]
    n = q.shape[1] // k.shape[1]
    keys, values = cache_k.repeat_interleave(n, 1), cache_v.repeat_interleave(n, 1)
    w = (q @ keys.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1)
    return w @ values
''', "all L slots"),
        ("left itself out", '''
import math
import torch

def kv_step(cache_k, cache_v, k, v, q, position):
    cache_k[:, :, position] = k[:, :, 0]
    cache_v[:, :, position] = v[:, :, 0]
    n = q.shape[1] // k.shape[1]
    keys = cache_k[:, :, :position].repeat_interleave(n, 1)
    values = cache_v[:, :, :position].repeat_interleave(n, 1)
    w = (q @ keys.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1)
    return w @ values
''', "did not attend to itself"),
        ("no repeat for the query heads", '''
import math
import torch

def kv_step(cache_k, cache_v, k, v, q, position):
    cache_k[:, :, position] = k[:, :, 0]
    cache_v[:, :, position] = v[:, :, 0]
    keys, values = cache_k[:, :, :position + 1], cache_v[:, :, :position + 1]
    w = (q @ keys.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1)
    return w @ values
''', "must match the size"),
        ("scaled by the square root of the positions: no mistake the lab names", '''
import math
import torch

def kv_step(cache_k, cache_v, k, v, q, position):
    cache_k[:, :, position] = k[:, :, 0]
    cache_v[:, :, position] = v[:, :, 0]
    n = q.size(1) // k.size(1)
    keys = cache_k[:, :, :position + 1].repeat_interleave(n, 1)
    values = cache_v[:, :, :position + 1].repeat_interleave(n, 1)
    w = (q @ keys.transpose(-2, -1) / math.sqrt(keys.size(-2))).softmax(-1)
    return w @ values
''', "every case with position ≤ 0 and differs on every case with position ≥ 2"),
    ],
    "top_p": [
        ("kept the token where the mass before it equals p", '''
import torch

def top_p_filter(logits, p):
    probs, order = logits.softmax(-1).sort(-1, descending=True)
    drop = probs.cumsum(-1) - probs > p
    drop[..., 0] = False
    drop = drop.scatter(-1, order, drop)
    return logits.masked_fill(drop, float("-inf"))
''', "equals p"),
        ("summed the probabilities in float16", '''
import torch

def top_p_filter(logits, p):
    probs, order = logits.softmax(-1).half().sort(-1, descending=True)
    drop = probs.cumsum(-1) - probs >= p
    drop[..., 0] = False
    drop = drop.scatter(-1, order, drop)
    return logits.masked_fill(drop, float("-inf"))
''', "float16"),
        ("dropped the token that crosses p", '''
import torch

def top_p_filter(logits, p):
    probs, order = logits.softmax(-1).sort(-1, descending=True)
    keep = probs.cumsum(-1) <= p
    keep[..., 0] = True
    keep = keep.scatter(-1, order, keep)
    return logits.masked_fill(~keep, float("-inf"))
''', "crosses p was dropped"),
        ("kept nothing at p = 0", '''
import torch

def top_p_filter(logits, p):
    probs, order = logits.softmax(-1).sort(-1, descending=True)
    drop = probs.cumsum(-1) - probs >= p
    drop = drop.scatter(-1, order, drop)
    return logits.masked_fill(drop, float("-inf"))
''', "Every token was dropped at p = 0"),
        ("forgot to unsort", '''
import torch

def top_p_filter(logits, p):
    probs, order = logits.softmax(-1).sort(-1, descending=True)
    drop = probs.cumsum(-1) - probs >= p
    drop[..., 0] = False
    return logits.masked_fill(drop, float("-inf"))
''', "sorted order"),
        ("filtered in place", '''
import torch

def top_p_filter(logits, p):
    probs, order = logits.softmax(-1).sort(-1, descending=True)
    drop = probs.cumsum(-1) - probs >= p
    drop[..., 0] = False
    return logits.masked_fill_(drop.scatter(-1, order, drop), float("-inf"))
''', "changed its input `logits` in place"),
    ],
    "moe_route": [
        ("the right experts, worst first", '''
import torch
import torch.nn.functional as F

def moe_route(probs, k):
    N, E = probs.shape
    w, e = probs.topk(k, dim=-1)
    f = F.one_hot(e, E).sum(1).float().mean(0) / k
    return (w / w.sum(-1, keepdim=True)).flip(-1), e.flip(-1), E * (f * probs.mean(0)).sum()
''', "best first"),
        ("no renormalisation", '''
import torch
import torch.nn.functional as F

def moe_route(probs, k):
    w, e = probs.topk(k, dim=-1)
    f = F.one_hot(e, probs.shape[1]).float().sum(1).mean(0) / k
    return w, e, probs.shape[1] * (f * probs.mean(0)).sum()
''', "not renormalised"),
        ("the loss without E", '''
import torch
import torch.nn.functional as F

def moe_route(probs, k):
    w, e = probs.topk(k, dim=-1)
    f = F.one_hot(e, probs.shape[1]).float().sum(1).mean(0) / k
    return w / w.sum(-1, keepdim=True), e, (f * probs.mean(0)).sum()
''', "misses the factor E"),
        ("shares of N, not N * k", '''
import torch

def moe_route(probs, k):
    N, E = probs.shape
    w, e = probs.topk(k, dim=-1)
    f = torch.bincount(e.flatten(), minlength=E).float() / N
    return w / w.sum(-1, keepdim=True), e, E * (f * probs.mean(0)).sum()
''', "divide by k as well"),
        ("the loss as a float", '''
import torch

def moe_route(probs, k):
    N, E = probs.shape
    w, e = probs.topk(k, dim=-1)
    f = torch.bincount(e.flatten(), minlength=E).float() / (N * k)
    return w / w.sum(-1, keepdim=True), e, float(E * (f * probs.mean(0)).sum())
''', "should be a tensor"),
        ("the loss times E twice: no mistake the lab names", '''
import torch
import torch.nn.functional as F

def moe_route(probs, k):
    w, e = probs.topk(k, -1)
    E = probs.size(-1)
    f = F.one_hot(e, E).float().sum(1).mean(0) / k
    return w / w.sum(-1, keepdim=True), e, (f * probs.mean(0)).sum() * E * E
''', "times 4 (= E, with E = 4)"),
    ],
    "quantize_block": [
        ("divided by 16 steps", '''
import torch

def quantize_block(w):
    low, high = w.amin(1, keepdim=True), w.amax(1, keepdim=True)
    d = (high - low) / 16
    q = torch.trunc((w - low) * torch.where(d == 0, 0.0, 1 / d) + 0.5).clamp(0, 15).to(torch.uint8)
    d16, m16 = d[:, 0].half(), low[:, 0].half()
    return d16, m16, q[:, :16] | (q[:, 16:] << 4), q.float() * d16.float()[:, None] + m16.float()[:, None]
''', "16 steps where there are 15"),
        ("rounded with torch.round", '''
import torch

def quantize_block(w):
    low, high = w.amin(1, keepdim=True), w.amax(1, keepdim=True)
    d = (high - low) / 15
    q = torch.round((w - low) * torch.where(d == 0, 0.0, 1 / d)).clamp(0, 15).to(torch.uint8)
    d16, m16 = d[:, 0].half(), low[:, 0].half()
    return d16, m16, q[:, :16] | (q[:, 16:] << 4), q.float() * d16.float()[:, None] + m16.float()[:, None]
''', "rounded to the even code"),
        ("packed neighbours", '''
import torch

def quantize_block(w):
    low, high = w.amin(1, keepdim=True), w.amax(1, keepdim=True)
    d = (high - low) / 15
    q = torch.trunc((w - low) * torch.where(d == 0, 0.0, 1 / d) + 0.5).clamp(0, 15).to(torch.uint8)
    d16, m16 = d[:, 0].half(), low[:, 0].half()
    return d16, m16, q[:, 0::2] | (q[:, 1::2] << 4), q.float() * d16.float()[:, None] + m16.float()[:, None]
''', "Neighbouring codes share a byte"),
        ("scale from the maximum", '''
import torch

def quantize_block(w):
    high = w.amax(1, keepdim=True)
    d = high / 15
    q = torch.trunc(w * torch.where(d == 0, 0.0, 1 / d) + 0.5).clamp(0, 15).to(torch.uint8)
    d16, m16 = d[:, 0].half(), torch.zeros(w.size(0)).half()
    return d16, m16, q[:, :16] | (q[:, 16:] << 4), q.float() * d16.float()[:, None]
''', "maximum alone"),
        ("swapped nibbles", '''
import torch

def quantize_block(w):
    low, high = w.amin(1, keepdim=True), w.amax(1, keepdim=True)
    d = (high - low) / 15
    q = torch.trunc((w - low) * torch.where(d == 0, 0.0, 1 / d) + 0.5).clamp(0, 15).to(torch.uint8)
    d16, m16 = d[:, 0].half(), low[:, 0].half()
    return d16, m16, (q[:, :16] << 4) | q[:, 16:], q.float() * d16.float()[:, None] + m16.float()[:, None]
''', "nibbles are swapped"),
    ],
    "bits_per_char": [
        ("multiplied by ln 2", '''
import math

def bits_per_char(nats_per_token, n_tokens, n_chars):
    return nats_per_token * n_tokens / n_chars * math.log(2)
''', "wrong way"),
        ("bits per token", '''
import math

def bits_per_char(nats_per_token, n_tokens, n_chars):
    return nats_per_token / math.log(2)
''', "bits per token"),
        ("nats per character", '''
def bits_per_char(nats_per_token, n_tokens, n_chars):
    return nats_per_token * n_tokens / n_chars
''', "nats per character"),
    ],
}

# A syntax error (line 3, column 15), an exception in the learner's own helper, and the two
# ways code can run away: for any lab, with its function's name put in.
SYNTAX_ERROR = "import torch\n\ndef {function}(x:\n    return x\n"
RAISES = '''
def helper(value):
    return value["no such key"]


def {function}(*args):
    return helper({{}})
'''
LOOPS_FOREVER = '''
def {function}(*args):
    while True:
        pass
'''
ALLOCATES_TOO_MUCH = '''
import torch

def {function}(*args):
    return torch.ones(50 * 10**9 // 4)
'''

# A learner's attention that turns NaN on its third call: a run with it fails on every machine,
# which no learning rate guarantees (whether lr 10 diverges is the processor's rounding).
NAN_FROM_THE_THIRD_CALL = """
import math

calls = 0


def attention(q, k, v, mask=None):
    global calls
    calls += 1
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(-1) * (float("nan") if calls >= 3 else 1.0)
    return weights @ v, weights
"""
