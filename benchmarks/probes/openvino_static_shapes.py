"""Probe (2026-12-02, AMX Xeon): see benchmarks/README.md, "Probes on a second AMX Xeon instance". Run from the repo root after `fastclf train examples/train.csv -o runs/rt` and `fastclf accelerate runs/rt --variant onnx-int8 --variant openvino-int8 --keep`."""
# ruff: noqa: E701, E702, E402
import csv
import statistics as st
import sys
import time

import numpy as np
import openvino as ov

from fastclf import Classifier

texts=[r['text'] for r in csv.DictReader(open('examples/test.csv'))][:400]
c=Classifier.load('runs/rt', variant='onnx-int8'); p=c.body.pipeline
def bucket(f, L):
    n=f['input_ids'].shape[1]; return {k: np.pad(v, ((0,0),(0,L-n))) for k,v in f.items()}
feats=[p.tokenize([t]) for t in texts]
feats=[bucket(f, -(-f['input_ids'].shape[1]//16)*16) for f in feats]
lens=sorted(set(f['input_ids'].shape[1] for f in feats)); print('lens', lens)
core=ov.Core()
xml=sys.argv[1]
cfg={"PERFORMANCE_HINT":"LATENCY","INFERENCE_PRECISION_HINT":sys.argv[2]}
def med(run):
    for f in feats[:40]: run(f)
    ts=[]
    for f in feats:
        a=time.perf_counter(); run(f); ts.append(time.perf_counter()-a)
    return round(st.median(ts)*1000,3)
m=core.read_model(xml); dyn=core.compile_model(m,"CPU",cfg); rq=dyn.create_infer_request()
names=[i.get_any_name() for i in dyn.inputs]
print("dynamic", med(lambda f: rq.infer({n:f[n] for n in names})))
stat={}
for L in lens:
    mm=core.read_model(xml); mm.reshape({n: [1,L] for n in names}); stat[L]=core.compile_model(mm,"CPU",cfg).create_infer_request()
print("static", med(lambda f: stat[f['input_ids'].shape[1]].infer({n:f[n] for n in names})))
print("dynamic", med(lambda f: rq.infer({n:f[n] for n in names})))
