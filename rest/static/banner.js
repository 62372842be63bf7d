// Whose images are on screen: the patient banner (one patient at a time), the buttons that
// switch to the session's other patients, and the words that name a patient in a viewport's
// overlay. Patients come from the server by a session key ("p1", "p2", ...); an anonymized
// session has keys only, so it shows "Anonymized patient" (numbered when there are several),
// never a name, an ID or a date.

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// DICOM DA (YYYYMMDD) as YYYY-MM-DD; anything else as it is.
export function formatDate(value) {
  const text = value || "";
  return /^\d{8}$/.test(text) ? `${text.slice(0, 4)}-${text.slice(4, 6)}-${text.slice(6, 8)}` : text;
}

export class Patients {
  constructor(list, anonymize) {
    this.anonymize = Boolean(anonymize);
    this.update(list);
  }

  update(list) {
    this.list = list || [];
    this.byKey = new Map(this.list.map((p) => [p.key, p]));
  }

  get several() {
    return this.list.length > 1;
  }

  // The banner's and the switch's name for a patient.
  label(key) {
    const patient = this.byKey.get(key);
    if (this.anonymize) return "Anonymized patient" + (this.several ? ` ${String(key).slice(1)}` : "");
    if (!patient) return "No patient";
    // Until one of its studies is in the index, a patient's name is not known here.
    if (!patient.received) return "Unknown patient";
    return patient.name || "Unnamed patient";
  }

  // The overlay's lines for a study of this patient: nothing identifying when anonymized (but
  // still which of several patients), else the name and ID, and the study's date.
  overlay(key, studyDate) {
    const patient = this.byKey.get(key);
    if (this.anonymize || !patient) return { patient: this.several ? this.label(key) : "", date: "" };
    const name = this.label(key);
    return { patient: patient.patientID ? `${name}  ${patient.patientID}` : name, date: formatDate(studyDate) };
  }

  renderBanner(root, key) {
    root.dataset.patient = key || "";
    const patient = this.byKey.get(key);
    const nodes = [element("span", "patient-name", this.label(key))];
    if (!this.anonymize && patient) {
      const fields = [["ID", patient.patientID], ["Born", formatDate(patient.birthDate)], ["Sex", patient.sex]];
      for (const [title, value] of fields) {
        if (!value) continue;
        const field = element("span", "patient-field", `${title} `);
        field.appendChild(element("b", "", value));
        nodes.push(field);
      }
    }
    root.replaceChildren(...nodes);
  }

  // One button per patient, each naming its patient, when the session has more than one.
  renderSwitch(nav, key, onPick) {
    nav.hidden = !this.several;
    nav.replaceChildren();
    if (!this.several) return;
    nav.appendChild(element("span", "patient-switch-label", `${this.list.length} patients:`));
    for (const patient of this.list) {
      const button = element("button", "patient-choice", this.label(patient.key));
      button.type = "button";
      button.dataset.patient = patient.key;
      button.setAttribute("aria-pressed", String(patient.key === key));
      if (!this.anonymize && patient.patientID) button.appendChild(element("small", "", ` ${patient.patientID}`));
      button.addEventListener("click", () => onPick(patient.key));
      nav.appendChild(button);
    }
  }
}
