return FleetLearn.Cli.FleetLearnCommand.Run(args);
