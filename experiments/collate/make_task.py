#!/usr/bin/env python3
"""Data, scoring and tables for experiments/collate (python3 stdlib only).

Task: a chain of four operations on Z5 (values 0..4, each operation +d or *d
with d in 1..4: all permutations of Z5, so nothing collapses, and together they
form the affine group x -> ax+b, which does not commute), read left to right,
asked directly or through a rationale.
    question     "3+4*2+1*3"                 answer "0"
    rationale A  "3+4=2,2*2=4,4+1=0,0*3=0"   (step by step: four table look-ups)
    rationale B  "3+4*2+1*3=0"               (a shortcut: the whole chain in one jump)
Both rationale styles are correct in the training data (half the questions get
A, half B), but a 2-layer model cannot compose four steps in one jump, while it
executes each step of A (40 facts) easily: sampled rationales vary in quality, and the
gold answer's likelihood after a rationale tells the good ones apart. That is
the room COLLATE's preference step needs. The answer-only model has to jump.

  make_task.py gen --out DIR [--seed S] [--train N] [--pairs N] [--test N]
  make_task.py stage2 PRED.jsonl OUT.jsonl      rationale predictions -> answer prompts
  make_task.py score --rat RAT.jsonl --ans ANS.jsonl [--direct DIR.jsonl] --out S.json
  make_task.py pairstats DUMP.jsonl --out P.json
  make_task.py chosen POOL.jsonl OUT.jsonl     the chosen rationales as sft lines
  make_task.py table --dir OUT --seeds "1 2 3"
"""
import json, math, os, random, re, sys

PREFIX_ANSWER = "a:"      # retort explain build --prefix answer=a:
PREFIX_RATIONALE = "r:"   # --prefix rationale=r: --prefix rationale-answer=r:
SEP = "\n"                # --separator (default)
JOINER = ";"              # --answer-joiner ";"  (and retort pairs --answer-prefix ";")
K = 4                     # operations per question
MOD = 5                   # values 0..4
OPS = "+*"                # each with an operand 1..4: every operation permutes Z5 (--ops
                          # "+-*" adds subtraction; a 2x64 model had not learnt its steps
                          # after 1500 steps in a pilot, so the default leaves it out)


def apply(x, op, d):
    return (x + d if op == "+" else x - d if op == "-" else x * d) % MOD


def question(q):
    x, ops = q
    return str(x) + "".join(op + str(d) for op, d in ops)


def solve(q):
    x, ops = q
    for op, d in ops:
        x = apply(x, op, d)
    return x


def rationale(q, style):
    if style == "B":
        return f"{question(q)}={solve(q)}"
    x, ops = q
    steps = []
    for op, d in ops:
        y = apply(x, op, d)
        steps.append(f"{x}{op}{d}={y}")
        x = y
    return ",".join(steps)


def arg(name, default):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def gen():
    global OPS
    OPS = arg("--ops", OPS)
    out = arg("--out", None)
    rng = random.Random(int(arg("--seed", 7)))
    n_train, n_pairs, n_test = int(arg("--train", 4000)), int(arg("--pairs", 800)), int(arg("--test", 300))
    seen, allq = set(), []
    while len(allq) < n_test + n_train:
        q = (rng.randrange(MOD), tuple((rng.choice(OPS), rng.randrange(1, MOD)) for _ in range(K)))
        if q not in seen:
            seen.add(q)
            allq.append(q)
    test, train = allq[:n_test], allq[n_test:]
    os.makedirs(out, exist_ok=True)
    with open(f"{out}/expl.jsonl", "w") as f:       # the rationales the three modes are built from
        for q in train:
            style = rng.choice("AB")
            f.write(json.dumps({"question": question(q), "answer": str(solve(q)),
                                "explanation": rationale(q, style), "style": style}) + "\n")
    with open(f"{out}/pair_prompts.jsonl", "w") as f:  # training questions COLLATE samples rationales for
        for q in train[:n_pairs]:
            f.write(json.dumps({"prompt": PREFIX_RATIONALE + question(q) + SEP,
                                "answer": str(solve(q))}) + "\n")
    with open(f"{out}/test_answer.jsonl", "w") as f, open(f"{out}/test_rationale.jsonl", "w") as g:
        for q in test:
            qs, a = question(q), str(solve(q))
            f.write(json.dumps({"prompt": PREFIX_ANSWER + qs + SEP, "answer": a}) + "\n")
            g.write(json.dumps({"prompt": PREFIX_RATIONALE + qs + SEP, "answer": a,
                                "reference": rationale(q, "A")}) + "\n")


def style_of(r):
    """A: step by step (a ',' or more than one '='); B: one jump; ? otherwise."""
    if r.count("=") >= 2 or "," in r:
        return "A"
    return "B" if r.count("=") == 1 else "?"


def final_number(r):
    m = re.findall(r"-?\d+", r.split("=")[-1]) if "=" in r else []
    return m[-1] if m else None


def parse_question(text):
    m = re.fullmatch(r"(\d)((?:[-+*]\d)+)", text)
    return (int(m.group(1)), tuple((op, int(d)) for op, d in re.findall(r"([-+*])(\d)", m.group(2))))


def rationale_ok(prompt, r):
    """The rationale ends in the gold answer, and (step by step) each step follows the
    question's next operation from the previous result and computes it right."""
    q = parse_question(prompt[len(PREFIX_RATIONALE):].strip())
    if final_number(r) != str(solve(q)):
        return False
    if style_of(r) != "A":
        return r == rationale(q, "B")
    return r == rationale(q, "A")


def pred_text(o):
    for k in ("prediction", "completion"):
        if k in o:
            return o[k]
    c = o.get("completions")
    return c[0] if isinstance(c, list) else c


def stage2():
    src, dst = sys.argv[2], sys.argv[3]
    with open(dst, "w") as f:
        for line in open(src):
            o = json.loads(line)
            r = pred_text(o).strip()
            f.write(json.dumps({"prompt": o["prompt"] + r + JOINER, "answer": o["answer"]}) + "\n")


def score():
    rat, ans, direct, out = arg("--rat", None), arg("--ans", None), arg("--direct", None), arg("--out", None)
    s = {}
    if rat:
        rs = [json.loads(l) for l in open(rat)]
        texts = [pred_text(o).strip() for o in rs]
        s["rationale_correct"] = sum(rationale_ok(o["prompt"], t) for o, t in zip(rs, texts)) / len(rs)
        s["style_A"] = sum(style_of(t) == "A" for t in texts) / len(rs)
        a_ok = [rationale_ok(o["prompt"], t) for o, t in zip(rs, texts) if style_of(t) == "A"]
        b_ok = [rationale_ok(o["prompt"], t) for o, t in zip(rs, texts) if style_of(t) == "B"]
        s["correct_given_A"] = sum(a_ok) / len(a_ok) if a_ok else float("nan")
        s["correct_given_B"] = sum(b_ok) / len(b_ok) if b_ok else float("nan")
        good = steps = 0        # the arithmetic of every step written in step-by-step rationales
        for t in texts:
            if style_of(t) != "A":
                continue
            for st in t.split(","):
                m = re.fullmatch(r"(\d)([-+*])(\d)=(\d)", st)
                steps += 1
                good += bool(m) and apply(int(m[1]), m[2], int(m[3])) == int(m[4])
        s["step_acc_A"] = good / steps if steps else float("nan")
    if ans:
        xs = [json.loads(l) for l in open(ans)]
        s["acc_rationale"] = sum(pred_text(o).strip() == str(o["answer"]) for o in xs) / len(xs)
    if direct:
        xs = [json.loads(l) for l in open(direct)]
        s["acc_direct"] = sum(pred_text(o).strip() == str(o["answer"]) for o in xs) / len(xs)
    json.dump(s, open(out, "w"), indent=1)
    print(json.dumps(s))


def pairstats():
    dump, out = sys.argv[2], arg("--out", None)
    n = ch_ok = rj_ok = ch_A = rj_A = total = good = lines = 0
    chosen_from, rejected_from, pool_from = {}, {}, {}
    labels = None
    for line in open(dump):
        o = json.loads(line)
        lines += 1
        p, cs = o["prompt"], o["completions"]
        frm = o.get("from")
        labels = o.get("instances", labels)
        total += len(cs)
        good += sum(rationale_ok(p, c.strip()) for c in cs)
        if frm:
            for f in frm:
                pool_from[f] = pool_from.get(f, 0) + 1
        for a, b in o["pairs"]:
            n += 1
            ch_ok += rationale_ok(p, cs[a].strip())
            rj_ok += rationale_ok(p, cs[b].strip())
            ch_A += style_of(cs[a].strip()) == "A"
            rj_A += style_of(cs[b].strip()) == "A"
            if frm:
                chosen_from[frm[a]] = chosen_from.get(frm[a], 0) + 1
                rejected_from[frm[b]] = rejected_from.get(frm[b], 0) + 1
    s = {"prompts": lines, "pairs": n, "distinct_per_prompt": total / max(lines, 1),
         "pool_correct": good / max(total, 1),
         "chosen_correct": ch_ok / max(n, 1), "rejected_correct": rj_ok / max(n, 1),
         "chosen_A": ch_A / max(n, 1), "rejected_A": rj_A / max(n, 1)}
    if pool_from:
        s["instances"] = labels
        s["pool_from"] = pool_from
        s["chosen_from"] = chosen_from
        s["rejected_from"] = rejected_from
    json.dump(s, open(out, "w"), indent=1)
    print(json.dumps(s))


def chosen():
    """chosen POOL.jsonl OUT.jsonl: the chosen rationale of every pair as an sft line
    (prompt r:Q, completion the rationale): supervised fine-tuning on the same selection."""
    with open(sys.argv[3], "w") as f:
        for line in open(sys.argv[2]):
            o = json.loads(line)
            for a, _ in o["pairs"]:
                f.write(json.dumps({"prompt": o["prompt"], "completion": o["completions"][a]}) + "\n")


def ms(xs):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not xs:
        return "–"
    m = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return f"{100 * m:.1f} ± {100 * sd:.1f}"


def table():
    d, seeds = arg("--dir", None), arg("--seeds", "1 2 3").split()
    def load(path):
        try:
            return json.load(open(path))
        except (OSError, ValueError):
            return None
    rows = [("IT answer-only", "it1", "direct only"),
            ("IT three modes", "it3", "instruction tuning alone (COLLATE's start)"),
            ("IT three modes + DPO, single-instance pairs", "single", "pairs from 1 instance"),
            ("COLLATE: IT three modes + DPO, multi-instance pairs", "multi", "pairs from 3 instances"),
            ("COLLATE with RPO (DPO + NLL on chosen, rpo_alpha 1), multi-instance pairs", "multiR", "rpo"),
            ("IT three modes + DPO, pairs from 3 temperatures of one checkpoint", "multiT", "3 temperatures"),
            ("IT three modes + SFT on the multi-instance pairs' chosen rationales (no preference)", "sftC", "sft")]
    cols = ["acc_direct", "acc_rationale", "rationale_correct", "style_A", "correct_given_A", "correct_given_B"]
    print("| model | answer acc, direct (`a:`) | answer acc, rationale → answer | rationale correct | rationales step-by-step (A) | correct \\| A | correct \\| B | seeds done |")
    print("|---|---|---|---|---|---|---|---|")
    for name, key, _ in rows:
        ss = [load(f"{d}/eval/{key}-s{s}.score.json") for s in seeds]
        done = [x for x in ss if x]
        cells = [ms([x.get(c) for x in done]) for c in cols]
        print(f"| {name} | " + " | ".join(cells) + f" | {len(done)}/{len(seeds)} |")
    print()
    print("per seed (answer acc via rationale → answer):")
    for name, key, _ in rows:
        vals = []
        for s in seeds:
            x = load(f"{d}/eval/{key}-s{s}.score.json")
            vals.append(f"s{s} " + (f"{100 * x['acc_rationale']:.1f}" if x and "acc_rationale" in x else
                                    (f"{100 * x['acc_direct']:.1f} (direct)" if x and "acc_direct" in x else "–")))
        print(f"- {name}: " + ", ".join(vals))
    print()
    print("| pairs | pairs | distinct rationales / prompt | pool correct | chosen correct | rejected correct | chosen A | rejected A |")
    print("|---|---|---|---|---|---|---|---|")
    for key in ("single", "multi", "multiT"):
        ps = [load(f"{d}/pairs/{key}-s{s}.stats.json") for s in seeds]
        ps = [p for p in ps if p]
        if not ps:
            continue
        n = [p["pairs"] for p in ps]
        cells = [f"{sum(n) / len(n):.0f} ({min(n)}–{max(n)})",
                 f"{sum(p['distinct_per_prompt'] for p in ps) / len(ps):.2f}"]
        cells += [ms([p[c] for p in ps]) for c in ("pool_correct", "chosen_correct", "rejected_correct", "chosen_A", "rejected_A")]
        print(f"| {key}-instance | " + " | ".join(cells) + " |")
    print()
    print("| DPO on | logps/chosen, step 1 → last | logps/rejected, step 1 → last | eval_rewards/accuracies | eval_rewards/margins |")
    print("|---|---|---|---|---|")
    for key in ("single", "multi", "multiR", "multiT"):
        rows = []
        for s in seeds:
            try:
                ms_ = [json.loads(l) for l in open(f"{d}/models/{key}-s{s}/metrics.jsonl")]
            except OSError:
                continue
            tr = [m for m in ms_ if "logps/chosen" in m]
            ev = [m for m in ms_ if "eval_rewards/accuracies" in m]
            if tr and ev:
                rows.append((tr[0]["logps/chosen"], tr[-1]["logps/chosen"], tr[0]["logps/rejected"],
                             tr[-1]["logps/rejected"], ev[-1]["eval_rewards/accuracies"], ev[-1]["eval_rewards/margins"]))
        if not rows:
            continue
        f = lambda i: sum(r[i] for r in rows) / len(rows)
        sd = lambda i: math.sqrt(sum((r[i] - f(i)) ** 2 for r in rows) / max(len(rows) - 1, 1))
        print(f"| {key}-instance pairs | {f(0):.2f} → {f(1):.2f} ± {sd(1):.2f} | {f(2):.2f} → {f(3):.2f} ± {sd(3):.2f} "
              f"| {f(4):.3f} ± {sd(4):.3f} | {f(5):.2f} ± {sd(5):.2f} |")
    ps = [load(f"{d}/pairs/multi-s{s}.stats.json") for s in seeds]
    ps = [p for p in ps if p and "instances" in p]
    if ps:
        print()
        print("multi-instance pools, per instance (summed over seeds; sN is the seed): completions in the pool / chosen / rejected")
        labels = ps[0]["instances"]
        for i, lab in enumerate(labels):
            k = str(i)
            lab = re.sub(r".*/it3-s\d+/", "it3-sN/", lab)
            tot = [sum(p[f].get(k, 0) for p in ps) for f in ("pool_from", "chosen_from", "rejected_from")]
            print(f"- instance {i} `{lab}`: {tot[0]} / {tot[1]} / {tot[2]}")


if __name__ == "__main__":
    cmd = sys.argv[1]
    {"gen": gen, "stage2": stage2, "score": score, "pairstats": pairstats, "table": table,
     "chosen": chosen}[cmd]()
