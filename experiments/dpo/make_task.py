#!/usr/bin/env python3
"""Data and tables for experiments/dpo (stdlib only).

Task: three-term addition with a rationale, byte-level.
    prompt      "12+7+30="
    completion  "12+7=19,19+30=49;49"      rationale ";" answer
The SFT data is noisy on purpose (a checkable preference DPO can fix): 20% of
examples carry a wrong first partial sum (the chain stays consistent from it,
so the answer is wrong), 20% a correct rationale but a wrong final answer.

  make_task.py gen --out DIR           task files (train/pref/test JSONL)
  make_task.py score GEN.jsonl         accuracy of generate --out JSONL answers
  make_task.py stage2 GEN.jsonl OUT    prompts prompt+rationale+";" for two-stage eval
  make_task.py table ...               (see main)
"""
import json, os, random, sys

N = 30  # operands in [0, N)


def rationale(a, b, c, s1=None):
    s1 = a + b if s1 is None else s1
    return f"{a}+{b}={s1},{s1}+{c}={s1 + c}", s1 + c


def wrong(x, rng):
    d = rng.choice([-1, 1]) * rng.randint(1, 9)
    return x + d if x + d >= 0 else x + abs(d) + 1


def sft_completion(a, b, c, rng, noisy=True):
    r = rng.random() if noisy else 1.0
    if r < 0.2:
        rat, ans = rationale(a, b, c, wrong(a + b, rng))
        return f"{rat};{ans}"
    rat, ans = rationale(a, b, c)
    if r < 0.4:
        return f"{rat};{wrong(ans, rng)}"
    return f"{rat};{ans}"


def gen(out, seed):
    rng = random.Random(seed)
    os.makedirs(out, exist_ok=True)
    triples = [(a, b, c) for a in range(N) for b in range(N) for c in range(N)]
    rng.shuffle(triples)
    test, pref, train = triples[:300], triples[300:1300], triples[1300:7300]
    with open(f"{out}/sft.jsonl", "w") as f:
        for a, b, c in train:
            f.write(json.dumps({"prompt": f"{a}+{b}+{c}=",
                                "completion": sft_completion(a, b, c, rng)}) + "\n")
    with open(f"{out}/pref_prompts.jsonl", "w") as f, open(f"{out}/pref_prog.jsonl", "w") as g:
        for a, b, c in pref:
            p = f"{a}+{b}+{c}="
            f.write(json.dumps({"prompt": p, "answer": str(a + b + c)}) + "\n")
            rat, ans = rationale(a, b, c)
            good = f"{rat};{ans}"
            if rng.random() < 0.5:
                r2, a2 = rationale(a, b, c, wrong(a + b, rng))
                bad = f"{r2};{a2}"
            else:
                bad = f"{rat};{wrong(ans, rng)}"
            g.write(json.dumps({"prompt": p, "chosen": good, "rejected": bad}) + "\n")
    with open(f"{out}/test.jsonl", "w") as f:
        for a, b, c in test:
            f.write(json.dumps({"prompt": f"{a}+{b}+{c}=", "answer": str(a + b + c),
                                "reference": rationale(a, b, c)[0] + f";{a + b + c}"}) + "\n")


def answer_of(text):
    """The answer after the last ';' (single pass), or the whole text (stage 2)."""
    t = text.split(";")[-1].strip()
    return t


def correctness(path):
    out = []
    for line in open(path):
        o = json.loads(line)
        out.append(int(answer_of(o["completions"][0]) == o["answer"]))
    return out


def stage2(path, out):
    with open(out, "w") as f:
        for line in open(path):
            o = json.loads(line)
            rat = o["completions"][0].split(";")[0]
            f.write(json.dumps({"prompt": o["prompt"] + rat + ";", "answer": o["answer"]}) + "\n")


def metrics_last(path, keys):
    last = {}
    for line in open(path):
        o = json.loads(line)
        for k in keys:
            if k in o:
                last[k] = o[k]
    return last


def main():
    cmd = sys.argv[1]
    if cmd == "gen":
        gen(sys.argv[sys.argv.index("--out") + 1], 7)
    elif cmd == "stage2":
        stage2(sys.argv[2], sys.argv[3])
    elif cmd == "acc":  # acc GEN.jsonl [SFT_GEN.jsonl] -> "acc win_rate"
        c = correctness(sys.argv[2])
        acc = sum(c) / len(c)
        if len(sys.argv) > 3:
            s = correctness(sys.argv[3])
            wins = sum(1 for x, y in zip(c, s) if x > y)
            losses = sum(1 for x, y in zip(c, s) if x < y)
            ties = len(c) - wins - losses
            print(f"{acc:.4f} {(wins + 0.5 * ties) / len(c):.4f} {wins} {losses}")
        else:
            print(f"{acc:.4f}")
    elif cmd == "sacc":  # sacc GEN.jsonl -> mean accuracy over every sampled completion
        n = good = 0
        for line in open(sys.argv[2]):
            o = json.loads(line)
            for c in o["completions"]:
                n += 1
                good += answer_of(c) == o["answer"]
        print(f"{good / n:.4f}")
    elif cmd == "metrics":  # metrics metrics.jsonl key... -> last values
        last = metrics_last(sys.argv[2], sys.argv[3:])
        print(" ".join(f"{last[k]:.4f}" if k in last else "nan" for k in sys.argv[3:]))
    elif cmd == "pairstats":  # pairstats PROMPTS.jsonl DUMP.jsonl -> how good the pairs are
        pairstats(sys.argv[2], sys.argv[3])
    elif cmd == "plot":  # plot OUT.svg metrics.jsonl label [metrics.jsonl label ...]
        plot(sys.argv[2], sys.argv[3::2], sys.argv[4::2])
    elif cmd == "aggregate":  # aggregate seed-1/table.md ... -> mean ± sd table
        aggregate(sys.argv[2:])
    else:
        sys.exit(f"unknown command {cmd}")


AGG_COLS = ["acc (1-pass)", "win vs SFT", "acc (2-stage)", "acc (T=1 samples)",
            "eval rew. acc", "rewards/chosen", "rewards/rejected"]


def aggregate(tables):
    """One table over several seeds' table.md files: each run's key columns as
    mean ± sample standard deviation, then each seed's pair statistics."""
    import statistics
    rows, order, header, notes = {}, [], None, []
    for i, path in enumerate(tables):
        for line in open(path):
            if line.startswith("|---"):
                continue
            if not line.startswith("| "):
                if line.strip():
                    notes.append(f"seed file {path}: {line.strip()}")
                continue
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cells[0] == "model":
                header = cells
                continue
            key = tuple(cells[:5])
            if key not in rows:
                rows[key] = []
                order.append(key)
            rows[key].append(dict(zip(header, cells)))
    print(f"Mean ± sample standard deviation over {len(tables)} seeds.\n")
    print("| model | pairs | loss | beta | lr | " + " | ".join(AGG_COLS) + " |")
    print("|---|---|---|---|---|" + "---|" * len(AGG_COLS))
    for key in order:
        cells = []
        for col in AGG_COLS:
            vals = [float(r[col]) for r in rows[key] if r.get(col, "-") not in ("-", "nan")]
            if not vals:
                cells.append("-")
            elif len(vals) == 1:
                cells.append(f"{vals[0]:.3f}")
            else:
                cells.append(f"{statistics.mean(vals):.3f} ± {statistics.stdev(vals):.3f}")
        print("| " + " | ".join(key) + " | " + " | ".join(cells) + " |")
    print()
    for n in notes:
        print(n)


def pairstats(prompts, dump):
    """Share of chosen / rejected / all sampled completions whose rationale
    reaches the gold answer (the text after the last '=' before any ';')."""
    gold = {}
    for line in open(prompts):
        o = json.loads(line)
        gold[o["prompt"]] = o["answer"]
    ok = lambda p, c: c.split(";")[0].split("=")[-1].strip() == gold[p]
    n = chosen = rejected = total = good = 0
    for line in open(dump):
        o = json.loads(line)
        p, cs = o["prompt"], o["completions"]
        total += len(cs)
        good += sum(ok(p, c) for c in cs)
        for a, b in o["pairs"]:
            n += 1
            chosen += ok(p, cs[a])
            rejected += ok(p, cs[b])
    print(f"{n} pairs: rationale correct in {chosen / n:.3f} of chosen, {rejected / n:.3f} of "
          f"rejected, {good / total:.3f} of all distinct samples")


def plot(out, paths, labels):
    """rewards/chosen (solid) and rewards/rejected (dashed) over steps, one colour per run."""
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
               "#7f7f7f", "#bcbd22", "#17becf", "#000000", "#aec7e8"]
    series = []
    for p, lab in zip(paths, labels):
        ch, rj = [], []
        for line in open(p):
            o = json.loads(line)
            if "rewards/chosen" in o:
                ch.append((o["step"], o["rewards/chosen"]))
                rj.append((o["step"], o["rewards/rejected"]))
        series.append((lab, ch, rj))
    pts = [q for _, c, r in series for q in c + r]
    if not pts:
        sys.exit("plot: no rewards/chosen in the metrics")
    x0, x1 = min(q[0] for q in pts), max(q[0] for q in pts)
    y0, y1 = min(q[1] for q in pts), max(q[1] for q in pts)
    if y1 == y0:
        y1 = y0 + 1
    W, H, L, R, T, B = 900, 560, 70, 220, 30, 50
    sx = lambda x: L + (x - x0) / max(x1 - x0, 1) * (W - L - R)
    sy = lambda y: T + (y1 - y) / (y1 - y0) * (H - T - B)
    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<line x1="{L}" y1="{sy(0):.1f}" x2="{W - R}" y2="{sy(0):.1f}" stroke="#bbb"/>' if y0 < 0 < y1 else "",
         f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" fill="none" stroke="black"/>',
         f'<text x="{L}" y="{H - 15}">step {x0}</text><text x="{W - R - 60}" y="{H - 15}">step {x1}</text>',
         f'<text x="5" y="{T + 10}">{y1:.2f}</text><text x="5" y="{H - B}">{y0:.2f}</text>',
         f'<text x="{L + 10}" y="20">rewards/chosen (solid) and rewards/rejected (dashed)</text>']
    for i, (lab, ch, rj) in enumerate(series):
        col = colours[i % len(colours)]
        for data, dash in ((ch, ""), (rj, ' stroke-dasharray="5,4"')):
            d = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in data)
            s.append(f'<polyline points="{d}" fill="none" stroke="{col}" stroke-width="1.5"{dash}/>')
        s.append(f'<text x="{W - R + 10}" y="{T + 16 * (i + 1)}" fill="{col}">{lab}</text>')
    s.append("</svg>")
    open(out, "w").write("\n".join(s) + "\n")


if __name__ == "__main__":
    main()
