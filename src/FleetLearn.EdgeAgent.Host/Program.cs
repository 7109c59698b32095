// fleetlearn-agent: the vehicle's edge agent as a systemd service (edge-agent/README.md).
return await FleetLearn.EdgeAgent.Host.AgentHost.RunAsync(args, Console.Out, Console.Error);
