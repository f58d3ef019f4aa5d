"""``autointerp report`` and ``serve``: the review pages (``autointerp.report``), as a static site or live."""

from __future__ import annotations

from typing import Annotated, Optional

from autointerp.cli.app import ConfigOpt, DbOpt, DeviceOpt, LazyProgress, Opt, app, err, out
from autointerp.errors import UsageError

LayerOpt = Annotated[Optional[int], Opt("--layer", help="Only this layer.")]
ExplainerOpt = Annotated[Optional[str], Opt("--explainer", help="Only units whose best explanation is by this "
                                                                "explainer.")]
KindOpt = Annotated[Optional[str], Opt("--kind", help="Only this kind of unit: neuron, a dictionary's kind "
                                                      "(sae:1f2e3d4c) or a family (sae, pca, ica, random).")]
MinScoreOpt = Annotated[Optional[float], Opt("--min-score", help="Only units whose best test score is at least this.")]


@app.command()
def report(
    out_dir: Annotated[str, Opt("--out", help="Folder to write the site into (created; an earlier report there "
                                              "is replaced).")],
    layer: LayerOpt = None,
    explainer: ExplainerOpt = None,
    kind: KindOpt = None,
    min_score: MinScoreOpt = None,
    jobs: Annotated[Optional[int], Opt(help="Worker processes for the unit pages (default: every CPU).")] = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """A static review site of the results: leaderboard, summaries, runs, layer analyses, one page per unit.
    Opens from the file system (OUT/index.html) with no network."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from autointerp.config import load_config
    from autointerp.report import Filters, build_site

    if jobs is not None and jobs < 1:
        raise UsageError("--jobs must be at least 1")
    cfg = load_config(config, {"db": db})
    progress = LazyProgress(TextColumn("unit pages"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=err, transient=True)
    task = progress.add_task("units", total=None)
    with progress:
        result = build_site(cfg.db, out_dir, Filters(layer, explainer, kind, min_score), jobs,
                            lambda done, total: progress.update(task, completed=done, total=total))
    out.print(f"wrote {result.pages:,} pages ({result.units:,} units, {result.layers} layers) to {result.out}: "
              f"{result.bytes / 1e6:,.1f} MB in {result.wall_s:.1f} s", markup=False, highlight=False)
    out.print(f"open {result.out / 'index.html'}", markup=False, highlight=False)


@app.command()
def serve(
    host: Annotated[str, Opt(help="Address to listen on; anything but 127.0.0.1 exposes the results and the "
                                  "model to the network.")] = "127.0.0.1",
    port: Annotated[int, Opt(help="Port (0: any free port).")] = 8000,
    layer: LayerOpt = None,
    explainer: ExplainerOpt = None,
    kind: KindOpt = None,
    min_score: MinScoreOpt = None,
    simulator: Annotated[Optional[str], Opt(help="Simulator for typed texts: baseline (default) or a model "
                                                 "profile.")] = None,
    live: Annotated[Optional[bool], Opt("--live/--no-live", help="The \"try a text\" form on unit pages (default: "
                                                                 "on when listening on loopback only).")] = None,
    live_queue: Annotated[int, Opt(help="Typed texts that may wait while the model runs one; more are answered "
                                        "503.")] = 4,
    threads: Annotated[int, Opt(help="Threads rendering pages, each with its own read-only connection.")] = 8,
    device: DeviceOpt = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """The review pages served live from the database (read-only), plus a form on each unit page: type a text,
    see the unit's activations on it and what its explanations predict."""
    from autointerp.config import load_config
    from autointerp.report import Filters
    from autointerp.report.live import Live
    from autointerp.report.server import LOOPBACK, ReviewServer

    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port} is not a port; use 0..65535")
    if threads < 1 or live_queue < 0:
        raise UsageError("--threads must be at least 1 and --live-queue at least 0")
    cfg = load_config(config, {"db": db, "simulator": simulator, "device": device})
    live_on = host in LOOPBACK if live is None else live
    sim = None
    if live_on and cfg.simulator != "baseline":
        from autointerp.pipeline import LLMContext, make_simulator

        sim = make_simulator(cfg, LLMContext(cfg))  # calls are not logged: serve never writes to the database
    server = ReviewServer(cfg.db, host, port, Filters(layer, explainer, kind, min_score),
                          Live(device="cpu" if cfg.device == "auto" else cfg.device, simulator=sim), live_on,
                          threads=threads, live_queue=live_queue)
    if host not in LOOPBACK:
        err.print(f"warning: listening on {host}: anyone who can reach it can read the results"
                  + (" and run the model (--no-live turns the form off)" if live_on else ""), markup=False)
    out.print(f"serving {cfg.db} (read-only) at {server.url}  (Ctrl-C stops)", markup=False, highlight=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        for line in server.errors[-5:]:
            err.print(f"page error: {line}", markup=False, highlight=False)
