"""Probe (2026-12-02, AMX Xeon): see benchmarks/README.md, "Probes on a second AMX Xeon instance". Run from the repo root after `fastclf train examples/train.csv -o runs/rt` and `fastclf accelerate runs/rt --variant onnx-int8 --variant openvino-int8 --keep`."""
# ruff: noqa: E701, E702, E402
import contextlib
import csv
import time

import torch

torch.set_num_threads(1)
import fastclf.trainer as T

rows=list(csv.DictReader(open('examples/train.csv')))
texts=[r['text'] for r in rows][:16]
m=T._load_body(T.resolve_model(None)[0]); m.max_seq_length=64
f=m.tokenize(texts); print(f['input_ids'].shape, m[0].auto_model.config._attn_implementation)
def t(name, train, ac, grad):
    m.train(train)
    ctx=torch.autocast("cpu",dtype=torch.bfloat16) if ac else contextlib.nullcontext()
    g=contextlib.nullcontext() if grad else torch.no_grad()
    for _i in range(2):
        with ctx, g: m(dict(f))
    a=time.perf_counter()
    for _i in range(5):
        with ctx, g: m(dict(f))["sentence_embedding"]
    print(name, round((time.perf_counter()-a)/5*1000,1),"ms")
t("eval nograd fp32",False,False,False)
t("eval nograd bf16",False,True,False)
t("train grad fp32",True,False,True)
t("train grad bf16",True,True,True)
t("eval grad bf16",False,True,True)
t("train nograd bf16",True,True,False)
