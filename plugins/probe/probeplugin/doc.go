// Package probeplugin is what spiderpool-agent's detectors built on the probe
// engine share, and what a third-party detector on the same engine can reuse:
//
//   - Options: the window, retries, probes and idle_timeout attributes with
//     Spiderpool's defaults, their validation (errors name the attribute and
//     its file:line:column), and Decode/Schema to add a plugin's own
//     attributes beside them;
//   - Kit: the engine (recreated only when idle_timeout changes, so that a
//     reload keeps the sockets), the agent's family switches, the check
//     bookkeeping (metrics, error classification, standard evidence), and
//     the Health, Metrics and Shutdown methods of an sdk.Plugin;
//   - Classify: the fixed set of error reasons used in metrics;
//   - Info: a detector's sdk.Info with the capabilities the engine needs.
//
// A detector embeds *Kit and writes Info, ConfigSchema, Configure and Check;
// one without attributes of its own embeds *Detector (a Kit with those
// config methods) and writes Info and Check:
//
//	func (p *Plugin) Check(ctx context.Context, req sdk.CheckRequest) (sdk.CheckResult, error) {
//		return p.Kit.Check(ctx, req, probeplugin.Check{
//			Addr:  req.Address.Addr(),
//			Run:   (*probe.Engine).CheckConflict,
//			Judge: judge,
//		}), nil
//	}
//
// It imports the SDK and the probe engine only, like any third-party plugin.
package probeplugin
