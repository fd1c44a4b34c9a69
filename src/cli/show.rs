//! `virt-systemd show`: intent, rendered state and drift of a domain XML.

use super::{read_input, ShowArgs};
use crate::domain::{self, DomainXml};
use crate::error::Result;
use crate::report::{report, Report};

pub fn run(a: &ShowArgs) -> Result<()> {
    let (name, bytes) = read_input(&a.file)?;
    let text = domain::decode(&bytes).map_err(|e| super::rewrite::with_source(e, &name))?;
    let d = DomainXml::parse(text).map_err(|e| super::rewrite::with_source(e, &name))?;
    let r = report(&d)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&r).expect("serializable")
        );
    } else {
        print!("{}", human(&r));
    }
    Ok(())
}

pub fn human(r: &Report) -> String {
    let mut s = format!(
        "domain:       {} ({})\n",
        r.name,
        r.uuid.as_deref().unwrap_or("no uuid")
    );
    s += &format!(
        "virt-systemd: {}\n",
        if r.enabled { "enabled" } else { "not enabled" }
    );
    if let Some(i) = &r.intent {
        let creds: Vec<String> = i
            .credentials
            .iter()
            .map(|c| format!("{} ({})", c.name, c.kind.as_str()))
            .collect();
        s += &format!(
            "credentials:  {}\n",
            if creds.is_empty() {
                "-".into()
            } else {
                creds.join(", ")
            }
        );
        s += &format!(
            "machine id:   {}\n",
            if i.machine_id { "yes" } else { "no" }
        );
        s += &format!(
            "readiness:    {}\n",
            i.notify
                .map_or("off".into(), |p| format!("vsock-stream:2:{p}"))
        );
        s += &format!(
            "vsock:        {}\n",
            match (i.vsock, i.vsock_added) {
                (false, _) => "not requested",
                (true, true) => "added by virt-systemd",
                (true, false) => "the domain's own",
            }
        );
        if let Some(k) = &i.kernel_cmdline {
            s += &format!("kernel args:  {} ({:?})\n", k.args, k.mode);
        }
    }
    for u in &r.rendered.unmanaged {
        s += &format!("unmanaged:    {u}\n");
    }
    if r.drift.is_empty() {
        s += "drift:        none\n";
    }
    for d in &r.drift {
        s += &format!("drift:        {d}\n");
    }
    s
}
