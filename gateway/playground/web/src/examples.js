// The examples one click away: the README's /execute examples (the first
// four are the original README's curl bodies, as Python), then one for
// each feature the page shows (streaming, plots, args and files, errors).

export const examples = [
  {
    name: "hello",
    title: "Hello World",
    script: 'def main():\n    return {"message": "Hello World", "result": 42}\n',
  },
  {
    name: "greeting",
    title: "Greeting",
    script: 'def main():\n    return {"greeting": "Hello World"}\n',
  },
  {
    name: "pandas",
    title: "pandas",
    script: `import pandas as pd
import numpy as np

def main():
    df = pd.DataFrame({"A": [1, 2, 3], "B": [4, 5, 6]})
    return {
        "shape": df.shape,
        "sum": df.sum().to_dict(),
        "mean": df.mean().to_dict()
    }
`,
  },
  {
    name: "numpy",
    title: "numpy",
    script: `import numpy as np

def main():
    arr = np.array([1, 2, 3, 4, 5])
    return {
        "array": arr.tolist(),
        "sum": float(np.sum(arr)),
        "mean": float(np.mean(arr)),
        "std": float(np.std(arr))
    }
`,
  },
  {
    name: "stream",
    title: "Streaming",
    note: "output appears as the script writes it",
    script: `import sys
import time

def main():
    for i in range(3):
        print("step", i)
        time.sleep(1)
    print("almost done", file=sys.stderr)
    return "done"
`,
  },
  {
    name: "plot",
    title: "Plot",
    note: "figures left open come back as images",
    script: `import pandas as pd

def main():
    df = pd.DataFrame({"month": ["Jan", "Feb", "Mar", "Apr", "May", "Jun"],
                       "sales": [120, 135, 160, 150, 180, 210],
                       "costs": [100, 110, 115, 130, 125, 140]})
    print(df.to_string(index=False))
    ax = df.plot(x="month", y=["sales", "costs"], marker="o", title="Sales and costs")
    ax.set_ylabel("k$")
    return {"total_sales": int(df["sales"].sum())}
`,
  },
  {
    name: "files",
    title: "Args and files",
    note: "main(**args); input files in the working directory; output/ comes back",
    args: { column: "b" },
    files: [{ name: "data.csv", content: "a,b\n1,2\n3,4\n" }],
    script: `import os
import pandas as pd

def main(column):
    df = pd.read_csv("data.csv")
    os.makedirs("output", exist_ok=True)
    df.to_csv("output/doubled.csv", index=False, columns=[column])
    return int(df[column].sum())
`,
  },
  {
    name: "error",
    title: "An error",
    note: "errors come back with their type and the script's traceback",
    script: `def check(x):
    if x > 2:
        raise ValueError(f"{x} is too big")
    return x

def main():
    print("checking")
    return [check(x) for x in range(5)]
`,
  },
];
